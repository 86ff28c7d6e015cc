import { Elysia } from "elysia";
import { Collector } from "../../core/collect.ts";
import type { InferenceCore } from "../../core/service.ts";
import { checkRequestSchemas } from "../limits.ts";
import { sseResponse } from "../sse.ts";
import { chatChunk, chatCompletion, keptLogprobs, newId, nowSeconds, timingsOf, toolCallsOf, usageOf } from "./format.ts";
import { toChatRequests } from "./requests.ts";
import { ChatCompletionBody } from "./schemas.ts";

export function chatRoutes(core: InferenceCore) {
  return new Elysia().post("/v1/chat/completions", async ({ body, request }) => {
    checkRequestSchemas(body);
    // One request per choice (`n`), run side by side on their own sequences.
    const requests = toChatRequests(body);
    const logprobs = body.logprobs === true;
    const id = newId("chatcmpl");
    const collected = requests.map(() => new Collector());
    const results = () => collected.map((c) => c.result());
    if (!body.stream) {
      await core.generateParallel(body.model, requests, requests.length, (e, i) => collected[i]!.add(e), request.signal);
      return chatCompletion(id, body.model, results(), logprobs);
    }
    const created = nowSeconds();
    return sseResponse(request.signal, async (send, signal) => {
      const opened = new Set<number>();
      const open = (i: number) => {
        if (opened.has(i)) return;
        opened.add(i);
        send(chatChunk(id, body.model, created, { role: "assistant", content: "" }, null, i));
      };
      await core.generateParallel(body.model, requests, requests.length, (e, i) => {
        collected[i]!.add(e);
        if (e.type === "text") {
          open(i);
          send(chatChunk(id, body.model, created, { content: e.text }, null, i));
        }
      }, signal);
      // Throws the generation's error: before any output it becomes the HTTP status, after it an error event.
      const done = results();
      done.forEach((r, i) => {
        open(i);
        // Tool calls go out whole, in one chunk, once the generation has ended.
        if (r.toolCalls.length > 0) {
          send(chatChunk(id, body.model, created, { tool_calls: toolCallsOf(r.toolCalls).map((c, index) => ({ index, ...c })) }, null, i));
        }
        // Logprobs come whole once the choice has ended: llama.cpp scores the tokens after generating them.
        if (logprobs) send(chatChunk(id, body.model, created, {}, null, i, keptLogprobs(r.logprobs, r.text)));
        send(chatChunk(id, body.model, created, {}, r.finishReason, i));
      });
      if (body.stream_options?.include_usage) {
        send({ ...chatChunk(id, body.model, created, {}), choices: [], usage: usageOf(done.map((r) => r.usage), done.length), timings: done.length === 1 ? timingsOf(done[0]!) : undefined });
      }
    });
  }, {
    body: ChatCompletionBody,
    detail: { summary: "Create a chat completion", tags: ["OpenAI"], description: "OpenAI-compatible chat completions with streaming, tools and structured output." },
  });
}

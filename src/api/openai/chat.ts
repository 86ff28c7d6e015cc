import { Elysia } from "elysia";
import { Collector } from "../../core/collect.ts";
import type { InferenceCore } from "../../core/service.ts";
import { checkRequestSchemas } from "../limits.ts";
import { sseResponse } from "../sse.ts";
import { ChatChoiceStream } from "./chat-stream.ts";
import { chatChunk, chatCompletion, chatUsageOf, keptLogprobs, newId, nowSeconds, timingsOf } from "./format.ts";
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
      await core.generateParallel(body.model, requests, requests.length, (e, i) => collected[i]!.add(e), request.signal, "openai.chat");
      return chatCompletion(id, body.model, results(), logprobs);
    }
    const created = nowSeconds();
    return sseResponse(request.signal, async (send, signal) => {
      const choices = requests.map((_, i) => new ChatChoiceStream(send, id, body.model, created, i));
      await core.generateParallel(body.model, requests, requests.length, (e, i) => {
        collected[i]!.add(e);
        choices[i]!.on(e);
      }, signal, "openai.chat");
      // Throws the generation's error: before any output it becomes the HTTP status, after it an error event.
      const done = results();
      done.forEach((r, i) => {
        // Logprobs come whole once the choice has ended: llama.cpp scores the tokens after generating them.
        choices[i]!.end(r.finishReason, logprobs ? keptLogprobs(r.logprobs, r.text) : undefined);
      });
      if (body.stream_options?.include_usage) {
        send({ ...chatChunk(id, body.model, created, {}), choices: [], usage: chatUsageOf(done.map((r) => r.usage), done.length), timings: done.length === 1 ? timingsOf(done[0]!) : undefined });
      }
    });
  }, {
    body: ChatCompletionBody,
    detail: { summary: "Create a chat completion", tags: ["OpenAI"], description: "OpenAI-compatible chat completions with streaming, tools and structured output." },
  });
}

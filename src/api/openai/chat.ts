import { Elysia } from "elysia";
import { Collector } from "../../core/collect.ts";
import type { InferenceCore } from "../../core/service.ts";
import { checkRequestSchemas } from "../limits.ts";
import { sseResponse } from "../sse.ts";
import { chatChunk, chatCompletion, newId, nowSeconds, timingsOf, toolCallsOf, usageOf } from "./format.ts";
import { toChatRequest } from "./requests.ts";
import { ChatCompletionBody } from "./schemas.ts";

export function chatRoutes(core: InferenceCore) {
  return new Elysia().post("/v1/chat/completions", async ({ body, request }) => {
    checkRequestSchemas(body);
    const req = toChatRequest(body);
    const id = newId("chatcmpl");
    const collected = new Collector();
    if (!body.stream) {
      await core.generate(body.model, [req], collected.add, request.signal);
      return chatCompletion(id, body.model, collected.result());
    }
    const created = nowSeconds();
    return sseResponse(request.signal, async (send, signal) => {
      let opened = false;
      const open = () => {
        if (opened) return;
        opened = true;
        send(chatChunk(id, body.model, created, { role: "assistant", content: "" }));
      };
      await core.generate(body.model, [req], (e) => {
        collected.add(e);
        if (e.type === "text") {
          open();
          send(chatChunk(id, body.model, created, { content: e.text }));
        }
      }, signal);
      // Throws the generation's error: before any output it becomes the HTTP status, after it an error event.
      const r = collected.result();
      open();
      // Tool calls go out whole, in one chunk, once the generation has ended.
      if (r.toolCalls.length > 0) {
        send(chatChunk(id, body.model, created, { tool_calls: toolCallsOf(r.toolCalls).map((c, index) => ({ index, ...c })) }));
      }
      send(chatChunk(id, body.model, created, {}, r.finishReason));
      if (body.stream_options?.include_usage) {
        send({ ...chatChunk(id, body.model, created, {}), choices: [], usage: usageOf([r.usage]), timings: timingsOf(r) });
      }
    });
  }, {
    body: ChatCompletionBody,
    detail: { summary: "Create a chat completion", tags: ["OpenAI"], description: "OpenAI-compatible chat completions with streaming, tools and structured output." },
  });
}

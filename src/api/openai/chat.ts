import { Elysia } from "elysia";
import { Collector } from "../../core/collect.ts";
import type { InferenceCore } from "../../core/service.ts";
import { checkRequestSchemas } from "../limits.ts";
import { sseResponse } from "../sse.ts";
import { ChatChoiceStream } from "./chat-stream.ts";
import { chatChunk, chatCompletion, newId, nowSeconds, timingsOf, chatUsageOf } from "./format.ts";
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
      const choice = new ChatChoiceStream(send, id, body.model, created);
      await core.generate(body.model, [req], (e) => {
        collected.add(e);
        choice.on(e);
      }, signal);
      // Throws the generation's error: before any output it becomes the HTTP status, after it an error event.
      const r = collected.result();
      choice.end(r.finishReason);
      if (body.stream_options?.include_usage) {
        send({ ...chatChunk(id, body.model, created, {}), choices: [], usage: chatUsageOf([r.usage]), timings: timingsOf(r) });
      }
    });
  }, {
    body: ChatCompletionBody,
    detail: { summary: "Create a chat completion", tags: ["OpenAI"], description: "OpenAI-compatible chat completions with streaming, tools and structured output." },
  });
}

import { Elysia } from "elysia";
import type { InferenceService } from "../../inference/service.ts";
import { toChatRequest } from "../../inference/requests.ts";
import { chatChunk, chatCompletion, newId, nowSeconds, timingsOf, toolCallsOf, usageOf } from "../openai-format.ts";
import { checkRequestSchemas } from "../limits.ts";
import { ChatCompletionBody } from "../schemas.ts";
import { sseResponse } from "../sse.ts";

export function chatRoutes(service: InferenceService) {
  return new Elysia().post("/v1/chat/completions", async ({ body, request }) => {
    checkRequestSchemas(body);
    const req = toChatRequest(body);
    const id = newId("chatcmpl");
    if (!body.stream) {
      return chatCompletion(id, body.model, await service.chat(body.model, req, { signal: request.signal }));
    }
    const created = nowSeconds();
    return sseResponse(request.signal, async (send, signal) => {
      let opened = false;
      const open = () => {
        if (opened) return;
        opened = true;
        send(chatChunk(id, body.model, created, { role: "assistant", content: "" }));
      };
      const r = await service.chat(body.model, req, {
        signal,
        onText: (text) => {
          open();
          send(chatChunk(id, body.model, created, { content: text }));
        },
      });
      open();
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

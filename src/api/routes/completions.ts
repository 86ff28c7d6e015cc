import { Elysia } from "elysia";
import type { InferenceService } from "../../inference/service.ts";
import { toCompletionRequests } from "../../inference/requests.ts";
import { newId, nowSeconds, textChunk, textCompletion, usageOf } from "../openai-format.ts";
import { CompletionBody } from "../openai/schemas.ts";
import { sseResponse } from "../sse.ts";

export function completionRoutes(service: InferenceService) {
  return new Elysia().post("/v1/completions", async ({ body, request }) => {
    const requests = toCompletionRequests(body);
    const id = newId("cmpl");
    if (!body.stream) {
      return textCompletion(id, body.model, await service.complete(body.model, requests, { signal: request.signal }));
    }
    const created = nowSeconds();
    return sseResponse(request.signal, async (send, signal) => {
      let index = 0;
      const results = await service.complete(body.model, requests, {
        signal,
        onStart: (i) => (index = i),
        onText: (text) => send(textChunk(id, body.model, created, index, text)),
      });
      results.forEach((r, i) => send(textChunk(id, body.model, created, i, "", r.finishReason)));
      if (body.stream_options?.include_usage) {
        send({ id, object: "text_completion", created, model: body.model, choices: [], usage: usageOf(results.map((r) => r.usage)) });
      }
    });
  }, {
    body: CompletionBody,
    detail: { summary: "Create a text completion", tags: ["OpenAI"], description: "OpenAI-compatible legacy completions; `prompt` may be a list." },
  });
}

import { Elysia } from "elysia";
import { Collector } from "../../core/collect.ts";
import type { InferenceCore } from "../../core/service.ts";
import { sseResponse } from "../sse.ts";
import { newId, nowSeconds, textChunk, textCompletion, usageOf } from "./format.ts";
import { toCompletionRequests } from "./requests.ts";
import { CompletionBody } from "./schemas.ts";

export function completionRoutes(core: InferenceCore) {
  return new Elysia().post("/v1/completions", async ({ body, request }) => {
    const requests = toCompletionRequests(body);
    const id = newId("cmpl");
    const collected = requests.map(() => new Collector());
    const results = () => collected.map((c) => c.result());
    if (!body.stream) {
      await core.generate(body.model, requests, (e, i) => collected[i]!.add(e), request.signal);
      return textCompletion(id, body.model, results());
    }
    const created = nowSeconds();
    return sseResponse(request.signal, async (send, signal) => {
      await core.generate(body.model, requests, (e, i) => {
        collected[i]!.add(e);
        if (e.type === "text") send(textChunk(id, body.model, created, i, e.text));
      }, signal);
      const done = results();
      done.forEach((r, i) => send(textChunk(id, body.model, created, i, "", r.finishReason)));
      if (body.stream_options?.include_usage) {
        send({ id, object: "text_completion", created, model: body.model, choices: [], usage: usageOf(done.map((r) => r.usage)) });
      }
    });
  }, {
    body: CompletionBody,
    detail: { summary: "Create a text completion", tags: ["OpenAI"], description: "OpenAI-compatible legacy completions; `prompt` may be a list." },
  });
}

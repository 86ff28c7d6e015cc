import { Elysia } from "elysia";
import { Collector } from "../../core/collect.ts";
import type { InferenceCore } from "../../core/service.ts";
import { sseResponse } from "../sse.ts";
import { completionLogprobs, keptLogprobs, newId, nowSeconds, textChunk, textCompletion, type TextShape, usageOf } from "./format.ts";
import { toCompletionRequests } from "./requests.ts";
import { CompletionBody } from "./schemas.ts";

export function completionRoutes(core: InferenceCore) {
  return new Elysia().post("/v1/completions", async ({ body, request }) => {
    const requests = toCompletionRequests(body);
    const lanes = body.n ?? 1;
    const shape: TextShape = {
      echo: body.echo ? requests.map((r) => (r.kind === "text" ? r.prompt : "")) : undefined,
      logprobs: body.logprobs !== undefined && body.logprobs !== null,
      n: lanes,
    };
    const id = newId("cmpl");
    const collected = requests.map(() => new Collector());
    const results = () => collected.map((c) => c.result());
    if (!body.stream) {
      await core.generateParallel(body.model, requests, lanes, (e, i) => collected[i]!.add(e), request.signal, "openai.completions");
      return textCompletion(id, body.model, results(), shape);
    }
    const created = nowSeconds();
    return sseResponse(request.signal, async (send, signal) => {
      const started = new Set<number>();
      // With echo a choice's stream starts with its prompt.
      const start = (i: number) => {
        if (started.has(i)) return;
        started.add(i);
        if (shape.echo) send(textChunk(id, body.model, created, i, shape.echo[i]!));
      };
      await core.generateParallel(body.model, requests, lanes, (e, i) => {
        collected[i]!.add(e);
        if (e.type === "text") {
          start(i);
          send(textChunk(id, body.model, created, i, e.text));
        }
      }, signal, "openai.completions");
      const done = results();
      done.forEach((r, i) => {
        start(i);
        // Logprobs come whole with the choice's last chunk: llama.cpp scores the tokens once they are generated.
        const logprobs = shape.logprobs ? completionLogprobs(keptLogprobs(r.logprobs, (shape.echo?.[i] ?? "") + r.text)) : null;
        send(textChunk(id, body.model, created, i, "", r.finishReason, logprobs));
      });
      if (body.stream_options?.include_usage) {
        send({ id, object: "text_completion", created, model: body.model, choices: [], usage: usageOf(done.map((r) => r.usage), lanes) });
      }
    });
  }, {
    body: CompletionBody,
    detail: { summary: "Create a text completion", tags: ["OpenAI"], description: "OpenAI-compatible legacy completions; `prompt` may be a list." },
  });
}

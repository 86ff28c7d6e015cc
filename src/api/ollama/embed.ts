import { Elysia } from "elysia";
import type { InferenceCore } from "../../core/service.ts";
import type { Scheduler } from "../../scheduler/scheduler.ts";
import { ollamaError } from "./errors.ts";
import { keepAliveSeconds, modelName } from "./requests.ts";
import { EmbedBody, EmbeddingsBody } from "./schemas.ts";

const ns = (ms: number) => Math.max(0, Math.round(ms * 1e6));

/**
 * `/api/embed` (unit-length vectors, as Ollama's) and the older `/api/embeddings` (one prompt, one
 * vector). An input longer than the model's context is refused (400), never truncated, whatever
 * `truncate` says.
 */
export function embedRoutes(core: InferenceCore, scheduler: Scheduler) {
  const embed = async (name: string, inputs: string[], keepAlive: number | string | null | undefined, signal: AbortSignal, dimensions?: number) => {
    const model = modelName(name);
    const keep = keepAliveSeconds(keepAlive);
    try {
      return await core.embed(model, inputs, { dimensions }, signal, "ollama.embed");
    } catch (err) {
      throw ollamaError(err, name);
    } finally {
      if (keep !== undefined) scheduler.keepAlive(model, keep);
    }
  };
  return new Elysia()
    .post("/api/embed", async ({ body, request }) => {
      const startedAt = performance.now();
      const r = await embed(body.model, typeof body.input === "string" ? [body.input] : body.input, body.keep_alive, request.signal, body.dimensions ?? undefined);
      const total = ns(performance.now() - startedAt);
      // The engines do not time an embedding's parts: the whole request is its total and its load.
      return { model: body.model, embeddings: r.vectors, total_duration: total, load_duration: total, prompt_eval_count: r.promptTokens };
    }, {
      body: EmbedBody,
      detail: { summary: "Embed (Ollama)", tags: ["Ollama"], description: "Unit-length embeddings of a string or a list of strings; dimensions keeps the first components. Inputs longer than the context are a 400, not truncated." },
    })
    .post("/api/embeddings", async ({ body, request }) => {
      const r = await embed(body.model, [body.prompt], body.keep_alive, request.signal);
      return { embedding: r.vectors[0] };
    }, {
      body: EmbeddingsBody,
      detail: { summary: "Embedding of one prompt (Ollama's older endpoint)", tags: ["Ollama"] },
    });
}

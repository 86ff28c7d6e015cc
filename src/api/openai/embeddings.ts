import { Elysia } from "elysia";
import type { InferenceCore } from "../../core/service.ts";
import { EmbeddingBody } from "./schemas.ts";

function base64OfFloats(vector: number[]): string {
  return Buffer.from(new Float32Array(vector).buffer).toString("base64");
}

export function embeddingRoutes(core: InferenceCore) {
  return new Elysia().post("/v1/embeddings", async ({ body, request }) => {
    const inputs = typeof body.input === "string" ? [body.input] : body.input;
    const r = await core.embed(body.model, inputs, request.signal);
    const base64 = body.encoding_format === "base64";
    return {
      object: "list",
      model: body.model,
      data: r.vectors.map((vector, index) => ({ object: "embedding", index, embedding: base64 ? base64OfFloats(vector) : vector })),
      usage: { prompt_tokens: r.promptTokens, total_tokens: r.promptTokens },
    };
  }, {
    body: EmbeddingBody,
    detail: { summary: "Create embeddings", tags: ["OpenAI"], description: "Works with embedding GGUFs (BERT-style) and with causal models." },
  });
}

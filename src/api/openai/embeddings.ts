import { Elysia } from "elysia";
import type { EmbeddingInput } from "../../core/request.ts";
import type { InferenceCore } from "../../core/service.ts";
import { EmbeddingBody } from "./schemas.ts";

/** OpenAI's `encoding_format: "base64"`: the vector as little-endian float32 bytes. */
export function float32Base64(vector: readonly number[]): string {
  const view = new DataView(new ArrayBuffer(vector.length * 4));
  vector.forEach((x, i) => view.setFloat32(i * 4, x, true));
  return Buffer.from(view.buffer).toString("base64");
}

/** A string or a list of token ids is one input; any other list is a list of inputs. */
function inputsOf(input: EmbeddingBody["input"]): EmbeddingInput[] {
  if (typeof input === "string") return [input];
  if (input.every((x): x is number => typeof x === "number")) return [input];
  return input as EmbeddingInput[];
}

export function embeddingRoutes(core: InferenceCore) {
  return new Elysia().post("/v1/embeddings", async ({ body, request }) => {
    const r = await core.embed(body.model, inputsOf(body.input), { dimensions: body.dimensions ?? undefined }, request.signal, "openai.embeddings");
    const base64 = body.encoding_format === "base64";
    return {
      object: "list",
      model: body.model,
      data: r.vectors.map((vector, index) => ({ object: "embedding", index, embedding: base64 ? float32Base64(vector) : vector })),
      usage: { prompt_tokens: r.promptTokens, total_tokens: r.promptTokens },
    };
  }, {
    body: EmbeddingBody,
    detail: {
      summary: "Create embeddings",
      tags: ["OpenAI"],
      description: "Unit-length (L2-normalized) vectors, pooled as the GGUF's metadata says (a causal model without pooling metadata: its last token). Text or token ids; `dimensions` keeps the first components and renormalizes.",
    },
  });
}

// Sentence embeddings of a llama.cpp model, on an embedding context of its own (created on first
// use, one request at a time).
//
// Pooling is llama.cpp's, from the GGUF's `<arch>.pooling_type`: BERT-style models say mean or
// CLS; a causal model without it gets pooling "none", and node-llama-cpp then returns the last
// token's hidden state (the same vector as `pooling_type: last`; test/embeddings.test.ts checks).
import type { LlamaEmbeddingContext, LlamaModel, Token } from "node-llama-cpp";
import type { EmbeddingInput, EmbeddingResult } from "../../core/request.ts";
import { ContextLengthExceededError, GenerationAbortedError, InvalidRequestError } from "../../errors.ts";

interface ArchitectureMetadata {
  pooling_type?: number;
  attention?: { causal?: boolean };
}

export class LlamaEmbedder {
  private context: Promise<LlamaEmbeddingContext> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  /** `limit`: the most tokens one input may have, begin/end tokens included. */
  constructor(private readonly model: LlamaModel, private readonly limit: number, private readonly threads: number) {}

  embed(inputs: readonly EmbeddingInput[], signal?: AbortSignal): Promise<EmbeddingResult> {
    const run = this.queue.then(async () => {
      // A context that failed to be created (memory) is tried again by the next request.
      const ctx = await (this.context ??= this.createContext().catch((err: unknown) => {
        this.context = undefined;
        throw err;
      }));
      // Every input is checked before any is evaluated: a bad last input costs no work.
      const prepared = inputs.map((input, i) => this.prepare(ctx, input, i));
      const vectors: number[][] = [];
      for (const { tokens } of prepared) {
        if (signal?.aborted) throw new GenerationAbortedError();
        vectors.push([...(await ctx.getEmbeddingFor(tokens)).vector]);
      }
      return { vectors, promptTokens: prepared.reduce((n, p) => n + p.evaluated, 0) };
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  async dispose(): Promise<void> {
    if (this.context) await (await this.context.catch(() => undefined))?.dispose();
  }

  /**
   * node-llama-cpp refuses an input of `contextSize` tokens or more, so the context has one slot
   * more than the limit (positions past the limit are never used). A model that pools (mean, CLS,
   * last) or attends both ways needs the whole input in one batch: split over batches, llama.cpp
   * pools each batch apart and the vector is silently wrong (test/embeddings.test.ts compares). Plain causal models read their last token through the KV
   * cache, so the default batch serves them without the larger compute buffer.
   */
  private createContext(): Promise<LlamaEmbeddingContext> {
    const size = this.limit + 1;
    return this.model.createEmbeddingContext({ contextSize: size, batchSize: this.wholeInputBatch() ? size : undefined, threads: this.threads });
  }

  private wholeInputBatch(): boolean {
    const info = this.model.fileInfo;
    const arch = info.metadata.general?.architecture;
    const meta = (arch === undefined ? undefined : (info.metadata as unknown as Record<string, unknown>)[arch]) as ArchitectureMetadata | undefined;
    return (meta?.pooling_type ?? 0) !== 0 || meta?.attention?.causal === false || this.model.fileInsights.hasEncoder === true;
  }

  /** `input` as tokens, and how many the model will evaluate once its begin/end tokens are added. */
  private prepare(ctx: LlamaEmbeddingContext, input: EmbeddingInput, index: number): { tokens: Token[]; evaluated: number } {
    let tokens: Token[];
    if (typeof input === "string") {
      tokens = this.model.tokenize(input);
    } else {
      const vocab = this.vocabularySize();
      const bad = input.find((t) => !Number.isSafeInteger(t) || t < 0 || (vocab !== undefined && t >= vocab));
      if (bad !== undefined) {
        throw new InvalidRequestError(`input[${index}] has token id ${bad}, which is not in the vocabulary of this model (${vocab ?? "?"} tokens)`, "input");
      }
      tokens = [...input] as Token[];
    }
    if (tokens.length === 0) throw new InvalidRequestError(`input[${index}] has no tokens`, "input");
    if (tokens.length > this.limit) {
      throw new ContextLengthExceededError(tokens.length, this.limit, `input[${index}] has ${tokens.length} tokens`, "input");
    }
    // With the begin/end tokens getEmbeddingFor adds (it leaves out those already there).
    const evaluated = ctx.calculateInputLength(tokens);
    if (evaluated > this.limit) throw new ContextLengthExceededError(evaluated, this.limit, `input[${index}] has ${evaluated} tokens`, "input");
    return { tokens, evaluated };
  }

  private vocabularySize(): number | undefined {
    const tokens = this.model.fileInfo.metadata.tokenizer?.ggml?.tokens;
    return Array.isArray(tokens) && tokens.length > 0 ? tokens.length : undefined;
  }
}

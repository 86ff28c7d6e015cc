// Speculative decoding on a loaded GGUF model: each sequence gets a token predictor that drafts
// the next few tokens, and node-llama-cpp evaluates them in one batch with the real next token,
// keeping only the drafts the model itself would have produced (so the output does not change).
// "lookup" drafts from the prompt (the text so far, found in the input); "draft" from a small
// model with the same vocabulary, on its own context with one sequence per target sequence.
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, TokenPredictor } from "node-llama-cpp";
import type { ResolvedSpeculative } from "../../config/load-settings.ts";
import type { SpeculativeStatus } from "../types.ts";
import { MODEL_MEMORY } from "./model-memory.ts";

type NodeLlamaCpp = typeof import("node-llama-cpp");

/**
 * Most tokens drafted per decode step. node-llama-cpp 3.21.1 refuted every draft after the first (its
 * evaluation loop compared them with a list it never filled): patches/node-llama-cpp+3.21.1.patch
 * fills it. Four, by bench/speculative.ts on the copy model (prompt lookup, 1 thread): 1.81× plain
 * decoding with one, 2.45× with four, 2.60× with eight. On a CPU, checking a draft costs compute
 * for each drafted token, so a refuted long draft is not free; eight gained little over four.
 */
const DRAFT_TOKENS = 4;

export interface DraftRuntime {
  model: LlamaModel;
  context: LlamaContext;
}

/** The predictors of one loaded model, and the drafted/accepted counts since it was loaded. */
export class Speculation {
  private drafted = 0;
  private accepted = 0;

  constructor(private readonly nlc: NodeLlamaCpp, readonly config: ResolvedSpeculative, private readonly draft?: DraftRuntime) {}

  /** A new predictor for one target sequence (node-llama-cpp forbids sharing one). */
  predictor(): TokenPredictor {
    // A match of one token drafts on every common word, and on a small model each refuted draft costs
    // about a decode step: two tokens cut stories260K's drafts from 71 to 3 per 96 tokens with the
    // copy model's acceptance unchanged (bench/speculative.ts).
    if (this.config.mode === "lookup") return new this.nlc.InputLookupTokenPredictor({ patternLength: { min: 2 }, predictionLength: { min: 1, max: DRAFT_TOKENS } });
    const seq = this.draft!.context.getSequence();
    // Each step waits for its draft, which ends early at a token the draft model is less than 60%
    // sure of (node-llama-cpp's default), as llama-server does:
    // node-llama-cpp's default drafts beside the target's decoding and hands over whatever is
    // ready, which on a CPU both share was often nothing at all.
    // The draft samples with the target's options, but a token bias (logit_bias, ignore_eos) is
    // bound to the target model's tokenizer and node-llama-cpp throws on it in the draft's context,
    // leaving the target waiting for drafts forever: the draft drafts unbiased, and the target,
    // which applies the bias, refutes what the bias forbids.
    return new this.nlc.DraftSequenceTokenPredictor(seq, { minTokens: DRAFT_TOKENS, maxTokens: DRAFT_TOKENS, evaluateOptions: { tokenBias: undefined } });
  }

  /** Starts counting one generation's drafts on `seq`; the returned function reads them at its end. */
  meter(seq: LlamaContextSequence): () => { draftTokens: number; draftAcceptedTokens: number } {
    const before = seq.tokenPredictions;
    return () => {
      const now = seq.tokenPredictions;
      const accepted = now.validated - before.validated;
      const drafted = accepted + now.refuted - before.refuted;
      this.drafted += drafted;
      this.accepted += accepted;
      return { draftTokens: drafted, draftAcceptedTokens: accepted };
    };
  }

  status(): SpeculativeStatus {
    return { mode: this.config.mode, draft: this.config.mode === "draft" ? this.config.draftId : undefined, draftTokens: this.drafted, draftAcceptedTokens: this.accepted };
  }

  async dispose(): Promise<void> {
    if (!this.draft) return;
    await this.draft.context.dispose();
    await this.draft.model.dispose();
  }
}

/** Loads the draft model with a context like the target's: one sequence per target sequence. */
export async function loadDraft(llama: Llama, path: string, o: { contextLength: number; parallel: number; threads: number; gpuLayers: number | "auto"; batchSize?: number; flashAttention?: boolean }): Promise<DraftRuntime> {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: o.gpuLayers, ...MODEL_MEMORY });
  try {
    const context = await model.createContext({
      // The predictor keeps only the tail that fits, so a draft declaring less context still serves.
      contextSize: Math.min(o.contextLength, model.trainContextSize || o.contextLength),
      sequences: o.parallel,
      threads: { ideal: o.threads, min: o.threads },
      batchSize: o.batchSize,
      flashAttention: o.flashAttention,
    });
    return { model, context };
  } catch (err) {
    await model.dispose();
    throw err;
  }
}

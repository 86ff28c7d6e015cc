// What a generation reports in its usage event besides its text: time split into prefill and
// decode, tokens generated, and prompt tokens served from the sequence's cache.

import type { LlamaContextSequence, Token } from "node-llama-cpp";
import type { EventSink, FinishReason, Usage } from "../../core/events.ts";
import { timings } from "../../core/timings.ts";

/** Counts generated tokens and splits wall time into prefill (until the first token) and decode. */
export class GenerationClock {
  private readonly start = performance.now();
  private first: number | undefined;
  tokens = 0;

  onTokens(tokens: readonly Token[]): void {
    this.first ??= performance.now();
    this.tokens += tokens.length;
  }

  /** Emits usage and finish, the end of every successful generation. */
  finish(emit: EventSink, promptTokens: number, reason: FinishReason, extra: Pick<Usage, "reasoningTokens" | "cachedTokens" | "draftTokens" | "draftAcceptedTokens"> = {}): void {
    const end = performance.now();
    const first = this.first ?? end;
    emit({ type: "usage", usage: { promptTokens, completionTokens: this.tokens, ...extra }, timings: timings(promptTokens, this.tokens, first - this.start, end - first) });
    emit({ type: "finish", reason });
  }
}

/**
 * How many prompt tokens a generation did not evaluate because its sequence already held them
 * (node-llama-cpp keeps the longest common prefix of the sequence and the new input, and evaluates
 * the rest). Measured on the sequence, not predicted from the prompt, so it is what llama.cpp kept
 * whatever the input's shape (chat template, BOS, fill-in-the-middle markers): every token decoded
 * since the sequence was taken is metered (as input or output), so the tokens it holds beyond
 * those are the ones it kept.
 */
export class PromptReuse {
  private readonly before: { usedInputTokens: number; usedOutputTokens: number };
  private kept: number | undefined;

  constructor(private readonly seq: LlamaContextSequence) {
    this.before = seq.tokenMeter.getState();
  }

  /**
   * Reads the figure: call at the first generated token (a later context shift would blur it),
   * or at the end of a generation that produced none. Later calls keep the first reading.
   */
  promptEvaluated(): number {
    if (this.kept === undefined) {
      const decoded = this.seq.tokenMeter.diff(this.before);
      this.kept = Math.max(0, this.seq.nextTokenIndex - decoded.usedInputTokens - decoded.usedOutputTokens);
    }
    return this.kept;
  }

  /**
   * Of `promptTokens` (as usage counts them), those served from the cache. `uncounted`: tokens
   * node-llama-cpp puts before the prompt that usage leaves out (the BOS of a raw completion).
   */
  cachedTokens(promptTokens: number, uncounted = 0): number {
    return Math.min(promptTokens, Math.max(0, this.promptEvaluated() - uncounted));
  }
}

// Which free sequence of a context a request gets. llama.cpp keeps a sequence's KV cache between
// requests, and node-llama-cpp evaluates only what follows the prefix a new prompt shares with
// it: routing each request to the sequence holding its conversation is the prompt cache. A
// sequence taken for another conversation loses what it held; with saved states (saved-states.ts)
// that goes to disk first and comes back when the conversation does.

import { commonPrefix, MIN_SAVED_TOKENS, type StatefulSequence, type StateSpace } from "./saved-states.ts";

export class SequencePool<S extends StatefulSequence> {
  /** Least recently used first: a released sequence goes to the end. */
  private readonly free: S[];
  private closed = false;

  constructor(sequences: readonly S[], private readonly saved?: StateSpace) {
    this.free = [...sequences];
  }

  /**
   * Takes the sequence this prompt should run on, with the longest saved prefix loaded into it
   * when a saved state shares more than any free sequence. The rules:
   * - a free sequence is reused for its prefix only when that prefix is at least what the sequence
   *   throws away (another conversation sharing a long system prompt), or at least half the
   *   prompt and MIN_SAVED_TOKENS long (a conversation's next turn, even after a long reply the
   *   template drops, like a thinking model's thoughts); the longest such prefix first. So a
   *   conversation sharing only the template's first tokens never evicts another while an idle
   *   sequence is there;
   * - otherwise the least recently used sequence (empty ones first);
   * - a saved state sharing at least MIN_SAVED_TOKENS more than that is loaded into the least
   *   recently used sequence;
   * - whatever a taken sequence holds beyond what the prompt keeps is saved first, when it is at
   *   least MIN_SAVED_TOKENS.
   * Without a prompt (scoring, which clears the sequence), the least recently used one.
   */
  async acquire(prompt: readonly number[] = []): Promise<S | undefined> {
    if (this.free.length === 0) return undefined;
    // node-llama-cpp copies the token list on each read.
    const held = this.free.map((seq) => seq.contextTokens);
    const empty = held.findIndex((tokens) => tokens.length === 0);
    const lru = empty >= 0 ? empty : 0;
    let pick = lru;
    let kept = 0;
    held.forEach((tokens, i) => {
      const shared = commonPrefix(tokens, prompt);
      const worth = shared >= tokens.length - shared || (2 * shared >= prompt.length && shared >= MIN_SAVED_TOKENS);
      if (shared > kept && worth) { pick = i; kept = shared; }
    });
    const restore = this.saved?.best(prompt);
    if (restore && restore.shared >= kept + MIN_SAVED_TOKENS) {
      const seq = this.free.splice(lru, 1)[0]!;
      await this.spill(seq, held[lru]!.length - commonPrefix(held[lru]!, restore.entry.tokens));
      await this.saved!.load(seq, restore.entry);
      return seq;
    }
    const seq = this.free.splice(pick, 1)[0]!;
    await this.spill(seq, held[pick]!.length - commonPrefix(held[pick]!, prompt));
    return seq;
  }

  /** Saves what the sequence holds when its next use discards `lost` tokens of it, enough to be worth a file. */
  private async spill(seq: S, lost: number): Promise<void> {
    if (this.saved && lost >= MIN_SAVED_TOKENS) await this.saved.save(seq);
  }

  release(seq: S): void {
    if (!this.closed) this.free.push(seq);
  }

  /** Takes no sequence back and deletes the saved states. */
  async close(): Promise<void> {
    this.closed = true;
    await this.saved?.close();
  }
}

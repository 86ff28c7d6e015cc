// Which free sequence of a context a request gets. llama.cpp keeps a sequence's KV cache between
// requests, and node-llama-cpp evaluates only what follows the prefix a new prompt shares with
// it: routing each request to the sequence holding its conversation is the prompt cache. A
// sequence taken for another conversation loses what it held; with saved states (saved-states.ts)
// that goes to disk first and comes back when the conversation does.

import { commonPrefix, MIN_SAVED_TOKENS, type StatefulSequence, type StateSpace } from "./saved-states.ts";

export class SequencePool<S extends StatefulSequence> {
  /** Least recently used first: a released sequence goes to the end. */
  private readonly free: S[];
  /** Each sequence's id, its place in the list given (node-llama-cpp numbers them in creation order). */
  private readonly ids: Map<S, number>;
  private closed = false;

  /** `sequences` in the order of their sequence ids. */
  constructor(sequences: readonly S[], private readonly saved?: StateSpace) {
    this.free = [...sequences];
    this.ids = new Map(sequences.map((seq, id) => [seq, id]));
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
   * - otherwise an empty sequence, or when none is, the least recently used one; among those that
   *   qualify (every empty one; with saved states every one, since the conversation it holds is
   *   saved either way), the one that keeps the running sequences' ids closest to a single run
   *   (see `beside`);
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
    const lru = this.beside(held);
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

  /**
   * The free sequence to start a new conversation on. llama.cpp gives each sequence its own KV
   * stream and decodes the tokens of several sequences in one pass only when their ids follow each
   * other (`split_equal(sequential)`): two streams on sequences 0 and 2 take two passes per step,
   * on 0 and 1 one. So among the candidates, the one leaving the fewest runs of consecutive busy
   * ids wins, then the least recently used. Candidates are the empty sequences, or when there are
   * none, the least recently used one only — unless saved states keep any evicted conversation.
   */
  private beside(held: readonly (readonly number[])[]): number {
    const empties = held.flatMap((tokens, i) => (tokens.length === 0 ? [i] : []));
    const candidates = empties.length > 0 ? empties : this.saved ? held.map((_, i) => i) : [0];
    if (candidates.length === 1) return candidates[0]!;
    const free = new Set(this.free.map((seq) => this.ids.get(seq)!));
    const busy = (id: number) => id >= 0 && id < this.ids.size && !free.has(id);
    let best = candidates[0]!;
    let fewest = Infinity;
    for (const i of candidates) {
      const id = this.ids.get(this.free[i]!)!;
      // Taking `id` joins the runs on either side (−1 each) or starts a new run (+1).
      const runs = 1 - (busy(id - 1) ? 1 : 0) - (busy(id + 1) ? 1 : 0);
      if (runs < fewest) { fewest = runs; best = i; }
    }
    return best;
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

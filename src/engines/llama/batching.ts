import type { BatchItem, CustomBatchingPrioritizationStrategy, PrioritizedBatchItem } from "node-llama-cpp";

// Why this exists: node-llama-cpp decodes the sequences of a context together, but its dispatch
// loop starts the next batch as soon as *any* sequence has queued its next token. After a batch,
// each sequence samples, hands its token to the generation loop and queues the next decode; the
// sequence whose sampling finished last is always still on its way when the loop looks again, so it
// misses the batch. With N streams the batches settle at N-1 tokens plus a 1-token batch every
// round (2 streams: batches of 1, i.e. no batching at all). Measured on a 2-core machine with a
// 0.5B q8_0 model: 4 streams reached 0.48× llama-server's aggregate throughput.
//
// The gate below is node-llama-cpp's public `itemPrioritizationStrategy` hook. While fewer
// sequences are queued than are known to be generating, it returns an empty batch, and the
// dispatch runs again on the next turn of the event loop (patches/node-llama-cpp+3.21.1.patch
// makes it dispatch one batch per hold of its context lock), so the missing sequence's way back
// (promise callbacks, and whatever it waits for on the event loop) can end with its token queued.
// The wait is bounded (a quarter of the recent batch interval, at most MAX_HOLD_MS) so a sequence
// that is busy elsewhere never stalls the others for long. Tiny models hold too: without it two
// streams fall into taking turns (each batch one sequence, the other still on its way back),
// measured on stories260K, 1 thread, 256 tokens: 2 streams 710 → 960 tok/s aggregate, 4 streams
// 1136 → 1226.

// The order of a batch matters as much: with one KV cache per sequence (node-llama-cpp's only
// mode), llama.cpp's split_equal(sequential) puts sequences in one ubatch only while their ids go
// up by one; in any other order the batch runs as several passes over the weights. node-llama-cpp
// adds the items in the order they were queued, which is whichever sequence sampled first, so the
// gate sorts them by sequence. Measured with a 0.5B q8_0 model, 1 thread, 4 streams: a 4-token
// decode took 240–350 ms unsorted, 120–150 ms sorted (aggregate 14.3 → 24.4 tok/s; llama-server 27).
// The strategy's items carry no sequence id, so `observe` notes which sequence queued each token
// array as it is queued (node-llama-cpp's internal `_decodeTokens`, checked for and skipped if a
// later version lacks it).

// Runs of tokens (the patch's generateTokenRuns) take the generating sequences out of the
// dispatcher: while they go, a batch holds a new request's prompt or first tokens, and nobody
// else is coming, so the gate does not hold then. And the time a run took is not a batch
// interval: a gap counts for at most what gives the longest hold.

const MAX_HOLD_MS = 4;
/** Share of the recent batch-to-batch interval a batch may wait for missing sequences. */
const HOLD_FRACTION = 0.25;
/** The longest gap counted in the batch interval: more would not lengthen the hold, only its recovery. */
const MAX_GAP_MS = MAX_HOLD_MS / HOLD_FRACTION;

export class DecodeGate {
  /** Sequences that have produced a token and not finished: each queues one token per batch. */
  private generating = 0;
  private holdStart: number | undefined;
  private lastBatchAt: number | undefined;
  /** Generations still evaluating their prompt, told of each batch so their watchdog sees progress. */
  private readonly prefilling = new Set<() => void>();
  /** Smoothed time between batches while sequences generate, ms. */
  private interval = 0;
  /** Batches dispatched, queued items they carried, and empty answers given while waiting. */
  readonly stats = { batches: 0, items: 0, holds: 0 };
  /** The sequence that queued each token array (see `observe`). */
  private readonly owners = new WeakMap<object, number>();
  /** Whether the observed context is generating runs of tokens now (see `observe`). */
  private runsActive: () => boolean = () => false;

  /**
   * Notes the sequence of every decode `context` queues, so batches go out in sequence order.
   * False when this node-llama-cpp queues decodes some other way (batches then keep queue order).
   */
  observe(context: object): boolean {
    const target = context as { _runsDispatching?: unknown; _decodeTokens?: (this: unknown, args: { sequenceId?: unknown; tokens?: unknown }, ...rest: unknown[]) => unknown };
    this.runsActive = () => target._runsDispatching === true;
    const original = target._decodeTokens;
    if (typeof original !== "function") return false;
    const owners = this.owners;
    target._decodeTokens = function (this: unknown, args, ...rest) {
      if (typeof args?.sequenceId === "number" && typeof args.tokens === "object" && args.tokens !== null) owners.set(args.tokens, args.sequenceId);
      return original.call(this, args, ...rest);
    };
    return true;
  }

  /** `batch` by sequence id (items of unknown sequence last, in their order). */
  private inSequenceOrder(batch: PrioritizedBatchItem[]): PrioritizedBatchItem[] {
    const id = (p: PrioritizedBatchItem) => this.owners.get(p.item.tokens) ?? Number.MAX_SAFE_INTEGER;
    return batch.length > 1 ? [...batch].sort((a, b) => id(a) - id(b)) : batch;
  }

  /**
   * Counts a generation from its first token until `done()`; safe to call `done` more than once.
   * Until its first token, `onBatch` runs for every batch the context dispatches (prompt progress).
   */
  track(onBatch?: () => void): { firstToken(): void; done(): void } {
    let state: "waiting" | "generating" | "done" = "waiting";
    if (onBatch) this.prefilling.add(onBatch);
    return {
      firstToken: () => {
        if (state !== "waiting") return;
        state = "generating";
        this.generating++;
        if (onBatch) this.prefilling.delete(onBatch);
      },
      done: () => {
        if (state === "generating") this.generating--;
        state = "done";
        if (onBatch) this.prefilling.delete(onBatch);
      },
    };
  }

  /** How long a batch may wait now for a generating sequence that has not queued its token. */
  get holdBoundMs(): number {
    return Math.min(MAX_HOLD_MS, this.interval * HOLD_FRACTION);
  }

  readonly strategy: CustomBatchingPrioritizationStrategy = ({ items, size }) => {
    const now = performance.now();
    const bound = this.holdBoundMs;
    if (items.length < this.generating && bound > 0 && !this.runsActive()) {
      this.holdStart ??= now;
      if (now - this.holdStart < bound) {
        this.stats.holds++;
        return [];
      }
    }
    this.holdStart = undefined;
    // A pause with nothing generating is not a batch interval: it would make the next burst's
    // first batches wait the longest hold however quick the model is.
    if (this.lastBatchAt !== undefined && this.generating > 0) {
      const gap = Math.min(now - this.lastBatchAt, MAX_GAP_MS);
      this.interval = this.interval === 0 ? gap : this.interval * 0.8 + gap * 0.2;
    }
    this.lastBatchAt = now;
    const batch = this.inSequenceOrder(shareBatch(items, size));
    if (batch.length > 0) for (const onBatch of this.prefilling) onBatch();
    this.stats.batches++;
    this.stats.items += batch.length;
    return batch;
  };
}

/**
 * Fills a batch of `size` tokens: every queued item gets an equal share, unused shares go to the
 * items that want more (long prompts), so generating sequences (one token each) are never crowded
 * out by a prompt being evaluated.
 */
export function shareBatch(items: readonly BatchItem[], size: number): PrioritizedBatchItem[] {
  // One sequence (a single stream's every token) takes what fits: the sharing below only allocates.
  if (items.length === 1) {
    const item = items[0]!;
    const amount = Math.min(item.tokens.length, size);
    return amount > 0 ? [{ item, processAmount: amount }] : [];
  }
  const out = items.map((item) => ({ item, processAmount: 0 }));
  let left = size;
  let open = out.filter((o) => o.item.tokens.length > 0);
  while (left > 0 && open.length > 0) {
    const share = Math.max(1, Math.floor(left / open.length));
    for (const o of open) {
      const n = Math.min(o.item.tokens.length - o.processAmount, share, left);
      o.processAmount += n;
      left -= n;
      if (left === 0) break;
    }
    open = open.filter((o) => o.processAmount < o.item.tokens.length);
  }
  return out.filter((o) => o.processAmount > 0);
}

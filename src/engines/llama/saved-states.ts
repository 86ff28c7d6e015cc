// Sequence states saved to disk when their sequence is taken for another conversation, so the
// conversation's next turn loads its KV cache back instead of evaluating its prompt again. One
// store per engine holds every loaded model's states in one folder under the LMX home, bounded
// in total bytes, least recently used first out. A state only ever goes back into the very
// context it came from: llama.cpp crashes on a state from another model or context layout.
//
// Saving happens on the path of the request that takes the sequence, so where the engine can
// (LMX's addon), the state is copied to memory and its file written after that request has
// started. A 256-token state then costs the request 0.09 instead of 0.33 ms on stories260K, 0.4
// instead of 1.7 ms on a Qwen2-0.5B, and a 2048-token one there 3 instead of 8 ms.

import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { log } from "../../log.ts";
import { errorMessage } from "../../errors.ts";
import { removeStaleFolders } from "../../util/stale-folders.ts";

/** A leftover of a crashed process must be this old before it goes (see src/util/stale-folders.ts). */
const STALE_AFTER_MS = 10 * 60 * 1000;
const FOLDER_PATTERN = /^(\d+)-[0-9a-f]+$/;
/**
 * States copied to memory and not yet on disk, at most: a larger one is written on the request's
 * path as before, which also holds back a server that displaces conversations faster than the
 * disk takes them.
 */
export const MAX_UNWRITTEN_BYTES = 64 * 1024 * 1024;

/** The part of node-llama-cpp's LlamaContextSequence a saved state needs. */
export interface StatefulSequence {
  readonly contextTokens: readonly number[];
  saveStateToFile(path: string): Promise<{ fileSize: number }>;
  /**
   * saveStateToFile, with the file written after the sequence is free again; undefined, with
   * nothing written, over maxBytes or where the engine cannot.
   */
  saveStateToFileLater?(path: string, maxBytes: number): Promise<{ fileSize: number; written: Promise<void> } | undefined>;
  loadStateFromFile(path: string, risk: { acceptRisk: true }): Promise<void>;
  clearHistory(): Promise<void>;
}

export interface SavedState {
  readonly tokens: Uint32Array;
  readonly path: string;
  readonly bytes: number;
  readonly owner: StateSpace;
  /** Loads in progress: the file stays until they finish. */
  pins: number;
  /** Whether the file is on disk, once its write ends; a state whose write failed is gone from the store. */
  written: Promise<boolean>;
}

/** Length of the common prefix of a sequence's tokens and a prompt. */
export function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const max = Math.min(a.length, b.length);
  let n = 0;
  while (n < max && a[n] === b[n]) n++;
  return n;
}

/** Deletes the folders crashed processes left under `root`. Best effort, never throws. */
export function removeSavedStateLeftovers(root: string): Promise<void> {
  return removeStaleFolders(root, FOLDER_PATTERN, STALE_AFTER_MS);
}

export class SavedStates {
  /** Insertion order is recency: the first entry is the least recently used. */
  private readonly entries = new Set<SavedState>();
  private bytes = 0;
  private folder: Promise<string> | undefined;
  private nextFile = 0;
  private readonly swept: Promise<void>;
  /** Bytes of the states copied to memory whose files are still being written. */
  private unwritten = 0;
  /** File writes and deletions in progress, which dispose waits for. */
  private readonly pending = new Set<Promise<unknown>>();

  /**
   * `root`: the parent of this process's folder, swept of crashed processes' folders at once.
   * `maxUnwrittenBytes`: see MAX_UNWRITTEN_BYTES (a seam for tests).
   */
  constructor(private readonly root: string, readonly limitBytes: number, private readonly maxUnwrittenBytes = MAX_UNWRITTEN_BYTES) {
    this.swept = removeSavedStateLeftovers(root);
  }

  get totalBytes(): number {
    return this.bytes;
  }

  get count(): number {
    return this.entries.size;
  }

  private dir(): Promise<string> {
    this.folder ??= (async () => {
      await this.swept;
      const dir = join(this.root, `${process.pid}-${randomBytes(4).toString("hex")}`);
      await mkdir(dir, { recursive: true });
      return dir;
    })();
    this.folder.catch(() => { this.folder = undefined; });
    return this.folder;
  }

  /** A namespace for one loaded context: its states are found, loaded and deleted only through it. */
  space(): StateSpace {
    return new StateSpace(this);
  }

  /** @internal */
  entriesOf(owner: StateSpace): SavedState[] {
    return [...this.entries].filter((e) => e.owner === owner);
  }

  /** @internal */
  touch(entry: SavedState): void {
    if (!this.entries.delete(entry)) return;
    this.entries.add(entry);
  }

  /** @internal The state kept (none when alone over the bound, or trimmed at once), and the file's size. */
  async save(owner: StateSpace, seq: StatefulSequence): Promise<{ saved: SavedState | undefined; bytes: number }> {
    const tokens = Uint32Array.from(seq.contextTokens);
    const path = join(await this.dir(), `${this.nextFile++}.state`);
    const room = Math.min(this.limitBytes, this.maxUnwrittenBytes - this.unwritten);
    let later: { fileSize: number; written: Promise<void> } | undefined;
    let bytes: number;
    try {
      later = room > 0 ? await seq.saveStateToFileLater?.(path, room) : undefined;
      bytes = later ? later.fileSize : (await seq.saveStateToFile(path)).fileSize;
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    const entry: SavedState = { tokens, path, bytes, owner, pins: 0, written: Promise.resolve(true) };
    if (later) entry.written = this.written(entry, later.written);
    else if (bytes > this.limitBytes) {
      // Alone over the bound: it goes, not every other state before it.
      await rm(path, { force: true });
      return { saved: undefined, bytes };
    }
    this.entries.add(entry);
    this.bytes += bytes;
    this.trim();
    return { saved: this.entries.has(entry) ? entry : undefined, bytes };
  }

  /** Follows a write in progress; a state whose write fails is forgotten and its file deleted. */
  private written(entry: SavedState, write: Promise<void>): Promise<boolean> {
    this.unwritten += entry.bytes;
    return this.track(write.then(
      () => true,
      async (err: unknown) => {
        log.warn("cannot write a prompt state; that conversation's next turn evaluates its prompt again", { path: entry.path, error: errorMessage(err) });
        this.forget(entry);
        await rm(entry.path, { force: true }).catch(() => undefined);
        return false;
      },
    ).finally(() => { this.unwritten -= entry.bytes; }));
  }

  /** Settles with `work`, which must not reject; dispose waits for it. */
  private track<T>(work: Promise<T>): Promise<T> {
    this.pending.add(work);
    void work.finally(() => this.pending.delete(work));
    return work;
  }

  /** @internal Drops least recently used states until the total fits (a pinned one waits for its load); their files go in the background. */
  trim(): void {
    for (const entry of [...this.entries]) {
      if (this.bytes <= this.limitBytes) return;
      if (entry.pins === 0) void this.remove(entry);
    }
  }

  private forget(entry: SavedState): boolean {
    if (!this.entries.delete(entry)) return false;
    this.bytes -= entry.bytes;
    return true;
  }

  /** @internal Drops the state at once; the promise settles when its file is gone (after its write, if that is in progress). */
  remove(entry: SavedState): Promise<void> {
    if (!this.forget(entry)) return Promise.resolve();
    return this.track(entry.written.then(() => rm(entry.path, { force: true })).catch((err: unknown) => log.warn("cannot delete a saved prompt state", { path: entry.path, error: errorMessage(err) })));
  }

  /** Deletes every state and this process's folder (engine shutdown). */
  async dispose(): Promise<void> {
    for (const entry of [...this.entries]) void this.remove(entry);
    await Promise.all(this.pending);
    const dir = await this.folder?.catch(() => undefined);
    this.folder = undefined;
    if (dir) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * Tokens lost below this many are not worth a file: evaluating them again costs about what
 * writing and reading their state does.
 */
export const MIN_SAVED_TOKENS = 64;

export class StateSpace {
  private closed = false;
  /** Measured on the first file: a state that cannot fit the bound is then never written. */
  private bytesPerToken: number | undefined;

  constructor(private readonly store: SavedStates) {}

  /** The saved state sharing the longest prefix with the prompt, and that length. */
  best(prompt: readonly number[]): { entry: SavedState; shared: number } | undefined {
    let best: { entry: SavedState; shared: number } | undefined;
    for (const entry of this.store.entriesOf(this)) {
      const shared = commonPrefix(entry.tokens, prompt);
      if (shared > (best?.shared ?? 0)) best = { entry, shared };
    }
    return best;
  }

  /**
   * Saves the sequence's state unless a saved one already holds it all; a saved state it extends
   * (an earlier turn of the same conversation) is replaced. Best effort: a failure is logged.
   */
  async save(seq: StatefulSequence): Promise<void> {
    if (this.closed || this.store.limitBytes === 0) return;
    const tokens = seq.contextTokens;
    if (this.bytesPerToken !== undefined && tokens.length * this.bytesPerToken > this.store.limitBytes) return;
    const entries = this.store.entriesOf(this);
    if (entries.some((e) => e.tokens.length >= tokens.length && commonPrefix(e.tokens, tokens) === tokens.length)) return;
    try {
      const { saved, bytes } = await this.store.save(this, seq);
      if (tokens.length > 0) this.bytesPerToken ??= bytes / tokens.length;
      if (!saved) return;
      // Unloaded while saving: nothing will ever load it.
      if (this.closed) return await this.store.remove(saved);
      for (const e of entries) if (e.pins === 0 && commonPrefix(e.tokens, tokens) === e.tokens.length) void this.store.remove(e);
    } catch (err) {
      log.warn("cannot save a prompt state; that conversation's next turn evaluates its prompt again", { error: errorMessage(err) });
    }
  }

  /** Loads a saved state into the sequence; on failure the sequence is left empty and false returned. */
  async load(seq: StatefulSequence, entry: SavedState): Promise<boolean> {
    entry.pins++;
    try {
      // A failed write leaves the sequence as it was, which is consistent.
      if (!(await entry.written)) return false;
      await seq.loadStateFromFile(entry.path, { acceptRisk: true });
      this.store.touch(entry);
      return true;
    } catch (err) {
      log.warn("cannot load a saved prompt state; the prompt is evaluated again", { error: errorMessage(err) });
      await this.store.remove(entry);
      await seq.clearHistory().catch(() => undefined);
      return false;
    } finally {
      entry.pins--;
      this.store.trim();
    }
  }

  /** Deletes this context's states (model unload). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.store.entriesOf(this).map((entry) => this.store.remove(entry)));
  }
}

// Which sequence a request gets, and saved states of the conversations evicted from them, on fake
// sequences whose "state file" is their token list padded to a chosen size.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SavedStates, type StatefulSequence } from "../../src/engines/llama/saved-states.ts";
import { SequencePool } from "../../src/engines/llama/sequence-pool.ts";

const BYTES_PER_TOKEN = 10;

class FakeSequence implements StatefulSequence {
  contextTokens: number[] = [];
  saves = 0;
  constructor(readonly name: string) {}
  async saveStateToFile(path: string): Promise<{ fileSize: number }> {
    this.saves++;
    const text = JSON.stringify(this.contextTokens).padEnd(this.contextTokens.length * BYTES_PER_TOKEN);
    writeFileSync(path, text);
    return { fileSize: text.length };
  }
  async loadStateFromFile(path: string): Promise<void> {
    this.contextTokens = JSON.parse(readFileSync(path, "utf8")) as number[];
  }
  async clearHistory(): Promise<void> {
    this.contextTokens = [];
  }
}

/**
 * A sequence whose engine copies its state to memory and writes the file afterwards (LMX's
 * addon): each write waits until the test lets it go, or fails it.
 */
class CopyingSequence extends FakeSequence {
  /** The bound each copy was asked under. */
  readonly maxBytes: number[] = [];
  readonly writes: { path: string; go: () => void; fail: (err: Error) => void }[] = [];
  async saveStateToFileLater(path: string, maxBytes: number): Promise<{ fileSize: number; written: Promise<void> } | undefined> {
    this.maxBytes.push(maxBytes);
    const text = JSON.stringify(this.contextTokens).padEnd(this.contextTokens.length * BYTES_PER_TOKEN);
    if (text.length > maxBytes) return undefined;
    const written = new Promise<void>((resolve, reject) => {
      this.writes.push({ path, go: () => { writeFileSync(path, text); resolve(); }, fail: reject });
    });
    return { fileSize: text.length, written };
  }
}

/** Lets pending callbacks (and the store's background work) run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
/** A conversation: a shared template start, then its own tokens. */
const conv = (id: number, n: number) => [1, 2, 3, ...range(id * 10_000, n)];

let roots: string[] = [];
function tempRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "lmx-pool-"));
  roots.push(root);
  return join(root, "prompt-cache");
}
afterEach(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
  roots = [];
});

/** Runs a "generation": the sequence ends up holding the prompt and a reply. */
async function run<S extends FakeSequence>(pool: SequencePool<S>, prompt: number[], reply: number[] = []): Promise<S> {
  const seq = (await pool.acquire(prompt))!;
  seq.contextTokens = [...prompt, ...reply];
  pool.release(seq);
  return seq;
}

describe("SequencePool without saved states", () => {
  test("scoring (no prompt) takes the least recently used sequence, not the last conversation's", async () => {
    const [a, b] = [new FakeSequence("a"), new FakeSequence("b")];
    const pool = new SequencePool([a, b]);
    expect(await run(pool, conv(1, 100))).toBe(a);
    expect(await run(pool, conv(2, 100))).toBe(b);
    // a was used before b: the scoring request must not clear b, the most recent conversation.
    const scored = (await pool.acquire())!;
    expect(scored).toBe(a);
    pool.release(scored);
  });

  test("a conversation sharing only the template start takes an idle sequence; its next turn finds its own", async () => {
    const seqs = [new FakeSequence("a"), new FakeSequence("b"), new FakeSequence("c")];
    const pool = new SequencePool(seqs);
    const a = await run(pool, conv(1, 100), range(500, 20));
    const b = await run(pool, conv(2, 100));
    expect(b).not.toBe(a);
    expect(b.contextTokens.length).toBe(103);
    // A long reply the template drops from the next turn (a thinking model's thoughts): the turn still goes to a.
    const thoughts = range(700, 400);
    a.contextTokens = [...conv(1, 100), ...thoughts];
    expect(await run(pool, [...conv(1, 100), 9, 9, 9])).toBe(a);
    // A short chat whose template start is half its prompt is no reason to take a used sequence.
    expect(await run(pool, [1, 2, 3, 4, 5])).toBe(seqs[2]!);
  });

  test("another conversation sharing a long system prompt reuses that sequence; with none idle, the least recently used goes", async () => {
    const [x, y] = [new FakeSequence("x"), new FakeSequence("y")];
    const pool = new SequencePool([x, y]);
    const system = range(100, 300);
    await run(pool, [...system, ...range(5000, 50)]);
    expect(await run(pool, [...system, ...range(6000, 50)])).toBe(x);
    await run(pool, conv(7, 10));
    expect(y.contextTokens).toEqual(conv(7, 10));
    // x was used before y: a conversation matching neither takes x.
    expect(await run(pool, conv(8, 10))).toBe(x);
  });

  test("a new conversation takes the idle sequence next to a running one, so llama.cpp decodes both in one pass", async () => {
    const seqs = ["s0", "s1", "s2", "s3"].map((n) => new FakeSequence(n));
    const pool = new SequencePool(seqs);
    const taken = await Promise.all(seqs.map(() => pool.acquire()));
    expect(taken).toEqual(seqs);
    // s0 keeps running; the others come back newest id first, so s3 is the least recently used.
    for (const seq of [seqs[3]!, seqs[2]!, seqs[1]!]) pool.release(seq);
    expect(await pool.acquire(conv(1, 10))).toBe(seqs[1]!);
  });

  test("with no idle sequence and no saved states, the least recently used goes even when it is not adjacent", async () => {
    const seqs = ["s0", "s1", "s2"].map((n) => new FakeSequence(n));
    const pool = new SequencePool(seqs);
    for (let i = 0; i < 3; i++) await run(pool, conv(i + 1, 100));
    // s2 runs conv 3's next turn; s0 is the least recently used and s1 would sit beside s2.
    const running = (await pool.acquire(conv(3, 120)))!;
    expect(running).toBe(seqs[2]!);
    expect(await pool.acquire(conv(9, 10))).toBe(seqs[0]!);
  });
});

describe("SequencePool with saved states", () => {
  test("with none idle, the sequence beside a running one is taken and its conversation saved", async () => {
    const store = new SavedStates(tempRoot(), 1_000_000);
    const seqs = ["s0", "s1", "s2"].map((n) => new FakeSequence(n));
    const pool = new SequencePool(seqs, store.space());
    for (let i = 0; i < 3; i++) await run(pool, conv(i + 1, 100));
    expect((await pool.acquire(conv(3, 120)))!).toBe(seqs[2]!);
    // s0 is the least recently used, but s1 sits beside the running s2; conv 2 goes to disk.
    expect(await pool.acquire(conv(9, 10))).toBe(seqs[1]!);
    expect(store.count).toBe(1);
    expect(seqs[1]!.saves).toBe(1);
    await pool.close();
    await store.dispose();
  });

  test("the evicted conversation is saved and loaded back on its next turn; close deletes the files", async () => {
    const store = new SavedStates(tempRoot(), 1_000_000);
    const space = store.space();
    const only = new FakeSequence("only");
    const pool = new SequencePool([only], space);
    await run(pool, conv(1, 200), range(900, 10));
    expect(store.count).toBe(0);
    await run(pool, conv(2, 50));
    expect(store.count).toBe(1);
    const back = (await pool.acquire([...conv(1, 200), ...range(900, 10), 42]))!;
    expect(back.contextTokens).toEqual([...conv(1, 200), ...range(900, 10)]);
    // Not conv 2: its 53 tokens are under the threshold, evaluating them again costs about as much.
    expect(store.count).toBe(1);
    pool.release(back);
    await pool.close();
    expect(store.count).toBe(0);
    await store.dispose();
  });

  test("a later turn's state replaces the earlier one's, and a state already saved is not saved again", async () => {
    const store = new SavedStates(tempRoot(), 1_000_000);
    const only = new FakeSequence("only");
    const pool = new SequencePool([only], store.space());
    await run(pool, conv(1, 200));
    await run(pool, conv(2, 200));
    await run(pool, conv(1, 300));
    await run(pool, conv(2, 300));
    // conv 1's 300-token state replaced its 200-token one; conv 2 holds the sequence, its earlier turn saved.
    expect(store.count).toBe(2);
    expect(store.totalBytes).toBe((303 + 203) * BYTES_PER_TOKEN);
    const seq = (await pool.acquire(conv(1, 300)))!;
    expect(seq.contextTokens).toEqual(conv(1, 300));
    expect(store.totalBytes).toBe(2 * 303 * BYTES_PER_TOKEN);
    pool.release(seq);
    // Loaded back and left unchanged: taking the sequence from it writes nothing.
    const saves = only.saves;
    expect((await pool.acquire(conv(2, 300)))!.contextTokens).toEqual(conv(2, 300));
    expect(only.saves).toBe(saves);
    expect(store.count).toBe(2);
    await store.dispose();
  });

  test("the byte bound drops the least recently used state; one state over the whole bound is not kept and drops nothing", async () => {
    const bytes = (n: number) => (n + 3) * BYTES_PER_TOKEN;
    const store = new SavedStates(tempRoot(), bytes(200) * 2);
    const only = new FakeSequence("only");
    const pool = new SequencePool([only], store.space());
    for (const id of [1, 2, 3]) await run(pool, conv(id, 200));
    await run(pool, conv(9, 10));
    // 1, 2 and 3 were saved; the bound holds two: 1 went.
    expect(store.count).toBe(2);
    expect((await pool.acquire(conv(1, 200)))!.contextTokens).toEqual(conv(9, 10));
    pool.release(only);
    // Loading 2 makes 3 the least recently used.
    expect((await pool.acquire(conv(2, 200)))!.contextTokens).toEqual(conv(2, 200));
    only.contextTokens = conv(4, 1000);
    pool.release(only);
    await run(pool, conv(5, 10));
    expect(store.count).toBe(2);
    expect(store.totalBytes).toBeLessThanOrEqual(bytes(200) * 2);
    expect((await pool.acquire(conv(3, 200)))!.contextTokens).toEqual(conv(3, 200));
    // Bytes per token are known now: a state that cannot fit is not even written.
    only.contextTokens = conv(6, 1000);
    pool.release(only);
    const saves = only.saves;
    await run(pool, conv(7, 10));
    expect(only.saves).toBe(saves);
    await store.dispose();
  });

  test("a state file that cannot be loaded leaves the sequence empty and is forgotten", async () => {
    const root = tempRoot();
    const store = new SavedStates(root, 1_000_000);
    const only = new FakeSequence("only");
    const pool = new SequencePool([only], store.space());
    await run(pool, conv(1, 200));
    await run(pool, conv(2, 10));
    for (const dir of readdirSync(root)) for (const f of readdirSync(join(root, dir))) writeFileSync(join(root, dir, f), "not a state");
    const seq = (await pool.acquire(conv(1, 200)))!;
    expect(seq.contextTokens).toEqual([]);
    expect(store.count).toBe(0);
    await store.dispose();
  });

  test("the store's folder is removed on dispose, and a crashed process's folder is swept at start", async () => {
    const root = tempRoot();
    mkdirSync(join(root, "999999999-deadbeef"), { recursive: true });
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(join(root, "999999999-deadbeef"), old, old);
    const store = new SavedStates(root, 1_000_000);
    const pool = new SequencePool([new FakeSequence("only")], store.space());
    await run(pool, conv(1, 200));
    await run(pool, conv(2, 10));
    const dirs = readdirSync(root);
    expect(dirs).toEqual([expect.stringMatching(new RegExp(`^${process.pid}-[0-9a-f]+$`))]);
    await store.dispose();
    expect(existsSync(join(root, dirs[0]!))).toBe(false);
  });
});

describe("saved states copied to memory and written in the background", () => {
  test("the request that displaces a conversation does not wait for its file; the next turn does", async () => {
    const store = new SavedStates(tempRoot(), 1_000_000);
    const only = new CopyingSequence("only");
    const pool = new SequencePool([only], store.space());
    await run(pool, conv(1, 200));
    // conv 2 takes the sequence while conv 1's file is still unwritten.
    await run(pool, conv(2, 50));
    expect(only.writes).toHaveLength(1);
    expect(only.saves).toBe(0);
    expect(store.count).toBe(1);
    expect(existsSync(only.writes[0]!.path)).toBe(false);

    let back: CopyingSequence | undefined;
    const acquiring = pool.acquire(conv(1, 200)).then((seq) => (back = seq));
    await settle();
    expect(back).toBeUndefined();
    only.writes[0]!.go();
    await acquiring;
    expect(back!.contextTokens).toEqual(conv(1, 200));
    pool.release(back!);
    await pool.close();
    await store.dispose();
  });

  test("a write that fails forgets the state; its next turn is evaluated on the sequence as it is", async () => {
    const store = new SavedStates(tempRoot(), 1_000_000);
    const only = new CopyingSequence("only");
    const pool = new SequencePool([only], store.space());
    await run(pool, conv(1, 200));
    await run(pool, conv(2, 100));
    expect(store.count).toBe(1);
    const acquiring = pool.acquire(conv(1, 200));
    await settle();
    only.writes[0]!.fail(new Error("disk full"));
    const seq = (await acquiring)!;
    // Only conv 2 is left: it was copied when conv 1 came back for its sequence, which still holds it.
    expect(store.count).toBe(1);
    expect(store.totalBytes).toBe(103 * BYTES_PER_TOKEN);
    expect(seq.contextTokens).toEqual(conv(2, 100));
    expect(only.writes).toHaveLength(2);
    only.writes[1]!.go();
    await store.dispose();
  });

  test("states not yet written are bounded: over the bound, the state is saved on the request's path", async () => {
    const bytes = (n: number) => (n + 3) * BYTES_PER_TOKEN;
    const store = new SavedStates(tempRoot(), 1_000_000, bytes(200) + bytes(100));
    const only = new CopyingSequence("only");
    const pool = new SequencePool([only], store.space());
    await run(pool, conv(1, 200));
    await run(pool, conv(2, 100));
    await run(pool, conv(3, 100));
    // conv 1's copy takes 2030 of the 3060 bytes; conv 2's 1030 fit; conv 3's would not.
    await run(pool, conv(4, 10));
    expect(only.maxBytes).toEqual([bytes(200) + bytes(100), bytes(100)]);
    expect(only.writes).toHaveLength(2);
    expect(only.saves).toBe(1);
    expect(store.count).toBe(3);
    // Written, the room is back.
    for (const w of only.writes) w.go();
    await settle();
    only.contextTokens = conv(5, 100);
    await run(pool, conv(6, 10));
    expect(only.writes).toHaveLength(3);
    expect(only.maxBytes.at(-1)).toBe(bytes(200) + bytes(100));
    only.writes[2]!.go();
    await store.dispose();
  });

  test("dispose waits for the writes in progress, then removes every file and the folder", async () => {
    const root = tempRoot();
    const store = new SavedStates(root, 1_000_000);
    const only = new CopyingSequence("only");
    const pool = new SequencePool([only], store.space());
    await run(pool, conv(1, 200));
    await run(pool, conv(2, 10));
    const folder = join(root, readdirSync(root)[0]!);
    let disposed = false;
    const disposing = store.dispose().then(() => (disposed = true));
    await settle();
    expect(disposed).toBe(false);
    only.writes[0]!.go();
    await disposing;
    expect(existsSync(folder)).toBe(false);
  });
});

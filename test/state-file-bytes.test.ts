// patches/node-llama-cpp+3.21.1.patch, LlamaContextSequence.saveStateToFileLater: a sequence's
// state copied to memory in one synchronous addon call and its file written on the thread pool
// afterwards, so src/engines/llama/saved-states.ts can let the request that displaced the
// conversation start first. The file must be the one llama.cpp's own save writes, byte for byte,
// since llama.cpp's load reads it. Real engine, stories260K, one thread.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel } from "node-llama-cpp";
import { type ContextInternals, generate, loadStories, override, requireNative, unloadStories } from "./helpers/llama-internals.ts";

let llama: Llama;
let model: LlamaModel;
let dir: string;
let context: LlamaContext;
beforeAll(async () => {
  ({ llama, model } = await loadStories());
  dir = mkdtempSync(join(tmpdir(), "lmx-state-bytes-"));
});
afterEach(async () => {
  await context?.dispose();
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await unloadStories({ llama, model });
});

async function newContext(): Promise<LlamaContext> {
  context = await model.createContext({ contextSize: 1024, sequences: 2, threads: 1, flashAttention: false });
  requireNative((context as unknown as ContextInternals)._ctx, "saveSequenceStateToFileLater");
  return context;
}

const PROMPT = "Once upon a time there was a little girl named Lily. She loved to play in the park with her dog and her cat.";

async function fileOf(seq: LlamaContextSequence, name: string): Promise<Buffer> {
  await seq.saveStateToFile(join(dir, name));
  return readFileSync(join(dir, name));
}

/** The file saveStateToFileLater wrote, once written; undefined when it wrote none. */
async function laterFileOf(seq: LlamaContextSequence, name: string, maxBytes = 1 << 30): Promise<Buffer | undefined> {
  const later = await seq.saveStateToFileLater(join(dir, name), maxBytes);
  if (!later) return undefined;
  await later.written;
  const file = readFileSync(join(dir, name));
  expect(file.byteLength).toBe(later.fileSize);
  return file;
}

describe("a sequence's state file copied to memory and written afterwards", () => {
  test("is the file llama.cpp saves, byte for byte, and loads back to the same continuation", async () => {
    const ctx = await newContext();
    const seq = ctx.getSequence();
    const prompt = model.tokenize(PROMPT);
    const first = await generate(seq, prompt, 40);
    const held = seq.contextTokens;
    expect(held.length).toBeGreaterThan(prompt.length + 30);

    const later = await laterFileOf(seq, "later.state");
    expect(later).toBeDefined();
    expect(later!.equals(await fileOf(seq, "saved.state"))).toBe(true);

    // Loaded into a cleared sequence: the same tokens, and the model goes on from them as it did.
    await seq.clearHistory();
    await seq.loadStateFromFile(join(dir, "later.state"), { acceptRisk: true });
    expect(seq.contextTokens).toEqual(held);
    const again = await generate(seq, [...prompt, ...first.slice(0, -1)], 20);
    await seq.clearHistory();
    const plain = await generate(seq, [...prompt, ...first.slice(0, -1)], 20);
    expect(again).toEqual(plain);
  });

  test("over maxBytes it writes nothing, and an empty sequence gives a file with no tokens", async () => {
    const ctx = await newContext();
    const seq = ctx.getSequence();
    await generate(seq, model.tokenize(PROMPT), 8);
    const size = (await laterFileOf(seq, "full.state"))!.byteLength;
    expect(await laterFileOf(seq, "over.state", size - 1)).toBeUndefined();
    expect(existsSync(join(dir, "over.state"))).toBe(false);
    expect((await laterFileOf(seq, "exact.state", size))!.byteLength).toBe(size);

    const empty = ctx.getSequence();
    const file = (await laterFileOf(empty, "empty-later.state"))!;
    expect(file.equals(await fileOf(empty, "empty.state"))).toBe(true);
    expect(file.readUInt32LE(8)).toBe(0);
  });

  test("a write that fails rejects its promise; the sequence is untouched", async () => {
    const ctx = await newContext();
    const seq = ctx.getSequence();
    await generate(seq, model.tokenize(PROMPT), 8);
    const held = seq.contextTokens;
    const later = (await seq.saveStateToFileLater(join(dir, "no-such-folder", "x.state"), 1 << 30))!;
    expect(later.fileSize).toBeGreaterThan(0);
    expect(later.written).rejects.toThrow(/Failed to open the state file/);
    await later.written.catch(() => undefined);
    expect(seq.contextTokens).toEqual(held);
  });

  test("waits for a decode in progress on another sequence of the context", async () => {
    const ctx = await newContext();
    const [a, b] = [ctx.getSequence(), ctx.getSequence()];
    await generate(a, model.tokenize(PROMPT), 24);
    const expected = await fileOf(a, "a.state");
    // b's decodes wait for a gate inside the addon call, which they make holding the context.
    const addon = (ctx as unknown as ContextInternals)._ctx;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let entered = 0;
    for (const key of ["decodeBatch", "decodeBatchAndSampleToken"] as const) {
      const original = addon[key]!.bind(addon) as (...args: unknown[]) => Promise<unknown>;
      override(addon, key, (async (...args: unknown[]) => {
        entered++;
        await gate;
        return original(...args);
      }) as never);
    }
    const running = generate(b, model.tokenize("Sue saw a big red ball in the garden."), 8);
    let copied = false;
    try {
      while (entered === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      const copy = a.saveStateToFileLater(join(dir, "a-later.state"), 1 << 30).then((later) => { copied = true; return later; });
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(copied).toBe(false);
      open();
      await (await copy)!.written;
      expect(readFileSync(join(dir, "a-later.state")).equals(expected)).toBe(true);
    } finally {
      open();
      await running;
    }
  });
});

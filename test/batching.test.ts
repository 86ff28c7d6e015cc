import { describe, expect, test } from "bun:test";
import type { BatchItem, LlamaContext } from "node-llama-cpp";
import { CPU_BATCH_SIZE } from "../src/engines/llama/batch-size.ts";
import { DecodeGate, shareBatch } from "../src/engines/llama/batching.ts";
import { ensureFixtures } from "./fixtures/models.ts";
import { startTestServer } from "./helpers/server.ts";

const fx = ensureFixtures();

/** Busy-waits: the gate reads performance.now(), and a timer would not be as exact. */
const spin = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};

type Stream = ReturnType<DecodeGate["track"]>;

/** n generations past their first token, as the gate counts them. */
const generating = (gate: DecodeGate, n: number): Stream[] =>
  Array.from({ length: n }, () => {
    const stream = gate.track();
    stream.firstToken();
    return stream;
  });

const item = (tokens: number): BatchItem => ({ tokens: Array.from({ length: tokens }, (_, i) => i) as unknown as BatchItem["tokens"], logits: [], evaluationPriority: 5 });

describe("shareBatch", () => {
  test("every generating sequence gets its token next to a long prompt", () => {
    const items = [item(1), item(2000), item(1), item(1)];
    const out = shareBatch(items, 512);
    expect(out.map((o) => o.processAmount)).toEqual([1, 509, 1, 1]);
    expect(out.reduce((a, o) => a + o.processAmount, 0)).toBe(512);
  });

  test("two prompts split the batch evenly and never exceed it", () => {
    const out = shareBatch([item(300), item(300)], 512);
    expect(out.map((o) => o.processAmount)).toEqual([256, 256]);
    expect(shareBatch([item(100), item(300)], 512).map((o) => o.processAmount)).toEqual([100, 300]);
  });

  test("more items than batch slots: the batch is filled, nothing is split below one token", () => {
    const out = shareBatch([item(1), item(1), item(1)], 2);
    expect(out.map((o) => o.processAmount)).toEqual([1, 1]);
  });

  test("one item alone takes what fits", () => {
    expect(shareBatch([item(2000)], 512).map((o) => o.processAmount)).toEqual([512]);
    expect(shareBatch([item(1)], 512).map((o) => o.processAmount)).toEqual([1]);
    expect(shareBatch([item(0)], 512)).toEqual([]);
  });
});

describe("DecodeGate", () => {
  test("a batch goes out in sequence order: llama.cpp decodes it in one pass only then", async () => {
    const gate = new DecodeGate();
    // Stands in for a node-llama-cpp context: its decodes are queued through _decodeTokens.
    const queued: BatchItem[] = [];
    const context = {
      _decodeTokens(args: { sequenceId: number; tokens: BatchItem["tokens"] }) {
        queued.push({ tokens: args.tokens, logits: [true], evaluationPriority: 5 });
        return Promise.resolve();
      },
    };
    expect(gate.observe(context)).toBe(true);
    for (const id of [2, 0, 3, 1]) void context._decodeTokens({ sequenceId: id, tokens: [100 + id] as unknown as BatchItem["tokens"] });
    const unknown = item(1);
    const out = gate.strategy({ items: [...queued, unknown], size: 512 });
    expect(out.map((o) => Number(o.item.tokens[0]))).toEqual([100, 101, 102, 103, 0]);
    // A context without that method is left alone.
    expect(gate.observe({})).toBe(false);
  });

  test("holds a batch while a generating sequence is missing, then gives up after the bound", async () => {
    const gate = new DecodeGate();
    const [a, b] = generating(gate, 2) as [Stream, Stream];
    // Batches ~20 ms apart (a model big enough for holding to pay off).
    for (let i = 0; i < 3; i++) {
      expect(gate.strategy({ items: [item(1), item(1)], size: 512 })).toHaveLength(2);
      await Bun.sleep(20);
    }
    // Only one of the two generating sequences has queued its token: wait for the other.
    expect(gate.strategy({ items: [item(1)], size: 512 })).toEqual([]);
    // Both queued: dispatch at once.
    expect(gate.strategy({ items: [item(1), item(1)], size: 512 })).toHaveLength(2);
    // A sequence that never comes back only delays the batch by the bound (a few ms at most).
    const start = performance.now();
    let out: unknown[] = [];
    while ((out = gate.strategy({ items: [item(1)], size: 512 })).length === 0) await Bun.sleep(0);
    expect(out).toHaveLength(1);
    expect(performance.now() - start).toBeLessThan(50);
    // A finished generation is no longer waited for.
    b.done();
    b.done();
    expect(gate.strategy({ items: [item(1)], size: 512 })).toHaveLength(1);
    a.done();
    expect(gate.stats.batches).toBe(6);
  });

  test("holds for a tiny model too, for a quarter of its sub-millisecond batch interval", () => {
    const gate = new DecodeGate();
    const [a, b] = generating(gate, 2) as [Stream, Stream];
    for (let i = 0; i < 4; i++) {
      expect(gate.strategy({ items: [item(1), item(1)], size: 512 })).toHaveLength(2);
      spin(0.4);
    }
    expect(gate.strategy({ items: [item(1)], size: 512 })).toEqual([]);
    // ...and not for long: a quarter of the interval (≈0.1 ms here; at most 4 ms).
    const start = performance.now();
    while (gate.strategy({ items: [item(1)], size: 512 }).length === 0) spin(0.05);
    expect(performance.now() - start).toBeLessThan(5);
    a.done();
    b.done();
  });

  test("no hold while the context generates runs of tokens: the generating sequences are in them, not coming", () => {
    const gate = new DecodeGate();
    const context = { _runsDispatching: false, _decodeTokens: () => undefined };
    gate.observe(context);
    const streams = generating(gate, 3);
    for (let i = 0; i < 3; i++) {
      expect(gate.strategy({ items: [item(1), item(1), item(1)], size: 512 })).toHaveLength(3);
      spin(2);
    }
    // A new request's prompt, queued alone beside three generations.
    expect(gate.strategy({ items: [item(40)], size: 512 })).toEqual([]);
    context._runsDispatching = true;
    expect(gate.strategy({ items: [item(40)], size: 512 })).toHaveLength(1);
    for (const s of streams) s.done();
  });

  test("a long gap between batches (a run of tokens, a stalled client) counts for at most what gives the longest hold", () => {
    const gate = new DecodeGate();
    const [a, b] = generating(gate, 2) as [Stream, Stream];
    for (let i = 0; i < 6; i++) {
      gate.strategy({ items: [item(1), item(1)], size: 512 });
      spin(0.4);
    }
    spin(200);
    gate.strategy({ items: [item(1), item(1)], size: 512 });
    // 0.8 × ≈0.4 + 0.2 × 16 at most, a quarter of it: not the 4 ms a 200 ms gap would give.
    expect(gate.holdBoundMs).toBeLessThan(1.5);
    a.done();
    b.done();
  });

  test("a pause with nothing generating does not count as a batch interval", async () => {
    const gate = new DecodeGate();
    const burst = () => {
      const a = gate.track();
      const b = gate.track();
      a.firstToken();
      b.firstToken();
      for (let i = 0; i < 4; i++) {
        gate.strategy({ items: [item(1), item(1)], size: 512 });
        spin(0.4);
      }
      a.done();
      b.done();
    };
    burst();
    const quick = gate.holdBoundMs;
    expect(quick).toBeGreaterThan(0);
    expect(quick).toBeLessThan(1);
    // Both streams ended after their last batch; nothing for a while, then the next request's prompt.
    await Bun.sleep(200);
    gate.strategy({ items: [item(12)], size: 512 });
    burst();
    expect(gate.holdBoundMs).toBeLessThan(1);
  });

  test("reports each dispatched batch to generations still evaluating their prompt (the watchdog's progress)", () => {
    const gate = new DecodeGate();
    let batches = 0;
    const t = gate.track(() => batches++);
    gate.strategy({ items: [item(2000)], size: 512 });
    gate.strategy({ items: [item(1488)], size: 512 });
    expect(batches).toBe(2);
    t.firstToken();
    gate.strategy({ items: [item(1)], size: 512 });
    expect(batches).toBe(2);
    t.done();
  });
});

describe("batched generation", () => {
  test("concurrent streams decode together and each gets every token", async () => {
    await using srv = await startTestServer(["--model", fx.qwen2Tiny, "--parallel", "4", "--ctx", "512"]);
    const run = (i: number) => srv.request("/v1/completions", {
      method: "POST",
      json: { model: "qwen2-tiny", prompt: `${i} once upon a time`, max_tokens: 40, temperature: 0, ignore_eos: true },
    }).then((r) => r.json() as Promise<{ usage: { completion_tokens: number } }>);
    await run(99);
    const lease = await srv.server.scheduler.acquire("qwen2-tiny");
    const gate = (lease.model as unknown as { gate: DecodeGate }).gate;
    lease.release();
    const before = { ...gate.stats };
    const results = await Promise.all([0, 1, 2, 3].map(run));
    for (const r of results) expect(r.usage.completion_tokens).toBe(40);
    const batches = gate.stats.batches - before.batches;
    const items = gate.stats.items - before.items;
    // The tiny fixture decodes faster than a sequence samples and queues its next token; the gate
    // holds each batch for the missing ones (see batching.ts). Measured: 3.8–3.9 of 4 per batch;
    // before, 2.0, or less when a stream waited for the context lock.
    expect(items / batches).toBeGreaterThan(2.5);
  });

  test("a request on a used sequence starts while other streams keep the context busy", async () => {
    // Reusing a sequence erases its old tokens, which takes node-llama-cpp's context lock; its
    // dispatch loop used to keep that lock for as long as any decode was queued when a batch
    // ended, which two streams on a tiny model do without a pause, so the new request waited for
    // both to finish.
    await using srv = await startTestServer(["--model", fx.stories260K, "--parallel", "3", "--ctx", "2048"]);
    const complete = (prompt: string, maxTokens: number) => srv.request("/v1/completions", {
      method: "POST",
      json: { model: "stories260K", prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true },
    }).then(async (r) => {
      expect(r.status).toBe(200);
      await r.json();
      return performance.now();
    });
    // Every sequence holds an earlier conversation.
    await Promise.all(["Tom had a dog", "Sue saw a cat", "A big red ball"].map((p) => complete(p, 4)));
    const long = [complete("Once upon a time", 600), complete("One day a girl", 600)];
    await Bun.sleep(100);
    const short = await complete("The sun was hot", 4);
    const [a, b] = await Promise.all(long);
    expect(short).toBeLessThan(Math.min(a!, b!));
  });

  test("the context gets the measured CPU batch size, or the one --batch-size sets", async () => {
    const batchSizeWith = async (args: string[]) => {
      await using srv = await startTestServer(["--model", fx.stories260K, "--parallel", "2", "--ctx", "1024", ...args]);
      const lease = await srv.server.scheduler.acquire("stories260K");
      try {
        return (lease.model as unknown as { context: LlamaContext }).context.batchSize;
      } finally {
        lease.release();
      }
    };
    // node-llama-cpp's own default would be 512 here (docs/performance.md, "Batch size").
    expect(await batchSizeWith([])).toBe(CPU_BATCH_SIZE);
    expect(await batchSizeWith(["--batch-size", "64"])).toBe(64);
  });

  test("ignore_eos forbids every end-of-generation token and generates exactly max_tokens", async () => {
    await using srv = await startTestServer(["--model", fx.stories260K, "--parallel", "1", "--ctx", "512"]);
    const res = await srv.request("/v1/completions", {
      method: "POST",
      json: { model: "stories260K", prompt: "Once upon a time", max_tokens: 400, temperature: 0, ignore_eos: true },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { usage: { completion_tokens: number }; choices: { finish_reason: string }[] };
    expect(body.usage.completion_tokens).toBe(400);
    expect(body.choices[0]!.finish_reason).toBe("length");
    // The bias table handed to the sampler holds the model's end-of-sequence token at -Infinity.
    const lease = await srv.server.scheduler.acquire("stories260K");
    try {
      const loaded = lease.model as unknown as { noEogBias(): { _biases: Map<number, number> }; model: { tokens: { eos: number | null } } };
      const eos = loaded.model.tokens.eos;
      expect(eos).not.toBeNull();
      expect(loaded.noEogBias()._biases.get(eos!)).toBe(-Infinity);
    } finally {
      lease.release();
    }
  });
});

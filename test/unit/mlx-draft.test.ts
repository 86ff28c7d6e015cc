// An MLX model with a draft model, through the real scheduler and MLX engine with the stub worker
// (test/helpers/stub-mlx-worker.ts) standing in for Python: what the load resolves to (one
// sequence, the draft's memory counted, the draft's folder sent to the worker), the draft counts
// reaching usage and the model's status, and the refusals (400s) of what cannot draft.
// The real mlx-lm worker drafting is test/mlx-speculative.test.ts.

import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Collector } from "../../src/core/collect.ts";
import { MlxEngine, type MlxPython } from "../../src/engines/mlx/engine.ts";
import { mlxVocabularyMismatch } from "../../src/engines/mlx/vocab.ts";
import type { LmxError } from "../../src/errors.ts";
import { configureLog } from "../../src/log.ts";
import { ModelCatalog } from "../../src/models/catalog.ts";
import { Scheduler } from "../../src/scheduler/scheduler.ts";

configureLog({ level: process.env.LMX_TEST_LOG_LEVEL ?? "error" });

const root = mkdtempSync(join(tmpdir(), "lmx-mlx-draft-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** An MLX folder the engine can inspect (the stub never reads it): `weights` bytes of safetensors, a tokenizer.json with `vocab` if given. */
function folder(name: string, weights: number, vocab?: string[]): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({
    model_type: "qwen2", hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 256, max_position_embeddings: 512,
  }));
  writeFileSync(join(dir, "model.safetensors"), new Uint8Array(weights));
  if (vocab) {
    const tokenizer = { model: { type: "BPE", vocab: Object.fromEntries(vocab.slice(0, -1).map((t, i) => [t, i])) }, added_tokens: [{ id: vocab.length - 1, content: vocab.at(-1) }] };
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  }
  return dir;
}

const python = join(root, "python");
const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
writeFileSync(python, `#!/bin/sh\nexec ${q(process.execPath)} ${q(join(import.meta.dir, "..", "helpers", "stub-mlx-worker.ts"))} ok\n`);
chmodSync(python, 0o755);

const models = [
  { id: "target", format: "mlx" as const, path: folder("target", 1 << 20) },
  { id: "small", format: "mlx" as const, path: folder("small", 1 << 16) },
  { id: "small-mismatch", format: "mlx" as const, path: folder("small-mismatch", 1 << 16) },
  { id: "tiny-gguf", format: "gguf" as const, path: join(root, "tiny.gguf") },
];
const words = Array.from({ length: 50 }, (_, i) => `w${i}`);
const withVocab = {
  a: folder("vocab-a", 16, [...words, "<|end|>"]),
  same: folder("vocab-same", 16, [...words, "<|end|>"]),
  other: folder("vocab-other", 16, [...words.map((w, i) => (i === 7 ? "x7" : w)), "<|end|>"]),
  longer: folder("vocab-longer", 16, [...words, "extra", "<|end|>"]),
};
models.push(...Object.entries(withVocab).map(([k, path]) => ({ id: `vocab-${k}`, format: "mlx" as const, path })));

function scheduler(): Scheduler {
  const runtime: MlxPython = { resolve: async () => ({ python, worker: "unused", source: "external" as const }), describe: () => "stub", unsupportedArchitectureHint: async () => "stub" };
  const catalog = new ModelCatalog({ modelsDir: join(root, "none"), explicit: [], configured: {}, aliases: () => new Map(), registered: () => models });
  return new Scheduler(catalog, { mlx: new MlxEngine(runtime) }, { load: { parallel: 4, threads: 1, ttl: 0 }, queueLimit: 4, memoryBudget: 8 * 1024 ** 3 }, {});
}

async function refusal(p: Promise<unknown>): Promise<LmxError> {
  const err = await p.then(() => undefined, (e: unknown) => e as LmxError);
  if (!err) throw new Error("not refused");
  return err;
}

test("tokenizer.json decides before any load: the same ids and texts fit, another text or size does not", () => {
  expect(mlxVocabularyMismatch(withVocab.a, withVocab.same)).toBeUndefined();
  expect(mlxVocabularyMismatch(withVocab.a, withVocab.a)).toBeUndefined();
  expect(mlxVocabularyMismatch(withVocab.a, withVocab.other)).toBe("token 7 differs");
  expect(mlxVocabularyMismatch(withVocab.a, withVocab.longer)).toBe("vocabulary sizes differ (51 vs 52 tokens)");
  // Without a tokenizer.json to read, the worker decides (with the tokenizers mlx-lm loads).
  expect(mlxVocabularyMismatch(withVocab.a, models[1]!.path)).toBeUndefined();
});

describe("an MLX model with a draft model", () => {
  test("loads with one sequence and the draft's memory; usage and status count the drafts", async () => {
    const s = scheduler();
    try {
      const plain = await s.loadModel("target");
      expect(plain.options?.parallel).toBe(4);
      expect(plain.speculative).toBeUndefined();
      const plainBytes = plain.memory!.modelBytes + plain.memory!.contextBytes;
      await s.unload("target");

      const status = await s.loadModel("target", { draft: "small" });
      expect(status.options?.parallel).toBe(1);
      expect(status.options?.speculative).toEqual({ mode: "draft", draftId: "small", draftPath: models[1]!.path });
      expect(status.speculative).toEqual({ mode: "draft", draft: "small", draftTokens: 0, draftAcceptedTokens: 0 });
      // The draft's weights (64 KiB) and its KV cache, at one sequence where the plain load had four.
      const perSequence = (plainBytes - plain.memory!.modelBytes) / 4;
      expect(status.memory!.modelBytes).toBe(plain.memory!.modelBytes + (1 << 16));
      expect(status.memory!.contextBytes).toBe(2 * perSequence);

      // Drafting for itself, the model's weights serve both: only the draft's KV cache is added.
      await s.unload("target");
      const self = await s.loadModel("target", { draft: "target" });
      expect(self.memory!.modelBytes).toBe(plain.memory!.modelBytes);
      expect(self.memory!.contextBytes).toBe(2 * perSequence);
      await s.unload("target");
      await s.loadModel("target", { draft: "small" });

      const lease = await s.acquire("target");
      const out = new Collector();
      try {
        await lease.model.generate({ kind: "chat", messages: [{ role: "user", content: "Hi" }], maxTokens: 4 }, out.add, lease.signal);
      } finally {
        lease.release();
      }
      expect(out.result().usage).toMatchObject({ completionTokens: 4, draftTokens: 4, draftAcceptedTokens: 3 });
      expect((await s.get("target")).speculative).toEqual({ mode: "draft", draft: "small", draftTokens: 4, draftAcceptedTokens: 3 });
    } finally {
      await s.shutdown();
    }
  }, 30_000);

  test("refuses with a 400 what cannot draft: lookup, no draft, a GGUF draft, other vocabularies, parallel, a load across nodes", async () => {
    const s = scheduler();
    try {
      const cases: [Record<string, unknown>, string, string][] = [
        [{ speculative: "lookup" }, "unsupported_parameter", "mlx-lm has no prompt-lookup decoding"],
        [{ speculative: "draft" }, "draft_model_missing", "needs a draft model"],
        [{ draft: "nope" }, "model_not_found", "'nope' not found"],
        [{ draft: "tiny-gguf" }, "draft_model_mismatch", "an MLX model needs an MLX draft"],
        [{ draft: "small", parallel: 2 }, "unsupported_parameter", "one request at a time"],
        [{ draft: "small-mismatch" }, "draft_vocabulary_mismatch", "'small-mismatch' cannot draft for 'target'"],
      ];
      for (const [settings, code, message] of cases) {
        const err = await refusal(s.loadModel("target", settings));
        expect([err.status, err.code]).toEqual([400, code]);
        expect(err.message).toContain(message);
      }
      expect(() => s.checkShardedLoad("target", { draft: "small" })).toThrow(/across nodes cannot have a draft model/);
      // Refused from tokenizer.json before the load: the model stays loaded as it was.
      expect((await s.loadModel("vocab-a")).state).toBe("ready");
      const err = await refusal(s.loadModel("vocab-a", { draft: "vocab-other" }));
      expect([err.status, err.code, err.message]).toEqual([400, "draft_vocabulary_mismatch", expect.stringContaining("token 7 differs")]);
      expect((await s.get("vocab-a")).state).toBe("ready");
      await s.unload("vocab-a");
      expect(() => s.checkShardedLoad("target", {})).not.toThrow();
      // Nothing of the refused loads stayed loaded; a plain load still works.
      expect(s.memoryInUse()).toBe(0);
      expect((await s.loadModel("target")).state).toBe("ready");
    } finally {
      await s.shutdown();
    }
  }, 30_000);
});

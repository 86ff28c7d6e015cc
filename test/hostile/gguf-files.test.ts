// Hostile GGUF files (issue 15, items 1 and 4): every one must be refused by our own reader with
// a message naming the field, fast and in bounded memory, through every door a model file comes
// in (import, the models folder and /v1/models, a JIT chat request), and the server must keep
// serving afterwards.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { validateGgufModel } from "../../src/gguf/model.ts";
import { fixtures } from "../fixtures/models.ts";
import { startTestServer } from "../helpers/server.ts";
import { kv } from "../fixtures/gguf.ts";
import { HOSTILE_CASES, unknownArchitecture, writeCase, writeSplit } from "./gen-gguf.ts";

const root = mkdtempSync(join(tmpdir(), "lmx-hostile-gguf-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const casesDir = join(root, "models");
mkdirSync(casesDir);
const paths = new Map(HOSTILE_CASES.map((c) => [c.name, writeCase(casesDir, c)]));
const MiB = 1024 * 1024;

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

describe("the strict GGUF reader", () => {
  test("accepts every real test model", () => {
    for (const path of [fixtures.qwen2Tiny, fixtures.llama3Tiny, fixtures.bertTiny, fixtures.stories260K, fixtures.vocabQwen2, fixtures.vocabBertBge]) {
      expect(() => validateGgufModel(path)).not.toThrow();
    }
  });

  for (const c of HOSTILE_CASES) {
    test(`refuses ${c.name}`, () => {
      const started = performance.now();
      let err: unknown;
      try {
        validateGgufModel(paths.get(c.name)!);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(Error);
      expect((err as { code?: string }).code).toBe("invalid_model_file");
      expect((err as Error).message).toMatch(c.expect);
      expect(performance.now() - started).toBeLessThan(2000);
    });
  }

  test("is lenient on architectures it does not know, but not on structure", () => {
    // State-space models legitimately declare no attention heads; the trial load covers the rest.
    const lenient = join(root, "unknown-arch.gguf");
    writeFileSync(lenient, unknownArchitecture("somessm", { "attention.head_count": kv.u32(0) }));
    expect(() => validateGgufModel(lenient)).not.toThrow();
    const strict = join(root, "unknown-arch-blocks.gguf");
    writeFileSync(strict, unknownArchitecture("somessm", { block_count: kv.u32(1) }));
    expect(() => validateGgufModel(strict)).toThrow(/belongs to block 1, but somessm\.block_count is 1/);
  });

  test("checks every shard of a split model", () => {
    const dir = join(root, "split");
    mkdirSync(dir);
    const [first, second] = writeSplit(dir, "m");
    expect(validateGgufModel(first).shards).toEqual([first, second]);

    const bytes = readFileSync(second);
    writeFileSync(second, bytes.subarray(0, bytes.length - 4096));
    expect(() => validateGgufModel(first)).toThrow(/m-00002-of-00002\.gguf: tensor .* extends past the end of the file/);
    rmSync(second);
    expect(() => validateGgufModel(first)).toThrow(/shard 2 of 2 .* no such file/);
  });

  test("the 78-byte file claiming 2^50 strings fails in milliseconds without allocating", () => {
    const path = paths.get("huge-array-count")!;
    expect(statSync(path).size).toBe(78);
    const rss = process.memoryUsage().rss;
    const started = performance.now();
    expect(() => validateGgufModel(path)).toThrow(/array length of a is 1125899906842624/);
    expect(performance.now() - started).toBeLessThan(250);
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * MiB);
  });
});

describe("hostile GGUFs through the server", () => {
  test("import, /v1/models and JIT chat refuse each file with a clear 4xx, and the server keeps serving", async () => {
    await using srv = await startTestServer(["--models-dir", casesDir, "--model", `good=${fixtures.qwen2Tiny}`]);
    const rssBefore = process.memoryUsage().rss;

    // The models folder scan lists them with their error instead of hanging on any.
    let started = performance.now();
    const list = await srv.request("/v1/models");
    expect(list.status).toBe(200);
    const models = ((await list.json()) as { data: { id: string; error?: string }[] }).data;
    expect(performance.now() - started).toBeLessThan(10_000);
    for (const c of HOSTILE_CASES) {
      const m = models.find((x) => x.id === c.name);
      expect(m?.error ?? `${c.name}: no error`).toMatch(c.expect);
    }

    // A JIT load by an inference request: 422 in OpenAI's shape, naming the field.
    for (const c of HOSTILE_CASES) {
      started = performance.now();
      const res = await srv.request("/v1/chat/completions", { method: "POST", json: { model: c.name, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 } });
      const body = (await res.json()) as ErrorBody;
      expect([c.name, res.status]).toEqual([c.name, 422]);
      expect(body.error).toMatchObject({ type: "invalid_request_error", code: "invalid_model_file" });
      expect(body.error.message).toMatch(c.expect);
      expect(performance.now() - started).toBeLessThan(5000);
    }

    // Import names every refused file and why.
    started = performance.now();
    const imp = await srv.request("/admin/v1/import", { method: "POST", json: { paths: [casesDir] } });
    expect(imp.status).toBe(200);
    const result = (await imp.json()) as { imported: unknown[]; skipped: { path: string; reason: string }[] };
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(result.imported).toEqual([]);
    for (const c of HOSTILE_CASES) {
      const s = result.skipped.find((x) => x.path === paths.get(c.name));
      expect(s?.reason ?? `${c.name}: not skipped`).toMatch(c.expect);
    }

    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(512 * MiB);

    // Last: a normal chat on a good model still works.
    const chat = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "good", messages: [{ role: "user", content: "Hi" }], max_tokens: 3 } });
    expect(chat.status).toBe(200);
    expect(((await chat.json()) as { choices: unknown[] }).choices.length).toBe(1);
  }, 300_000);
});

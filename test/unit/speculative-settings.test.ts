// The speculative and draft load settings: one declaration for every surface (schema, admin API,
// config.json, lmx load, lmx serve and its LMX_* env), how a load's layers resolve to a mode and a
// draft file, and the vocabulary rule a draft must pass.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { LoadBody, loadSettingsFromBody, loadSettingsToBody, PatchModelBody } from "../../src/api/admin/schemas.ts";
import { timingsOf } from "../../src/api/openai/format.ts";
import { loadFlags } from "../../src/cli/commands/load.ts";
import { DRAFT_MAX_LENGTH, LoadSettings, SPECULATIVE_MODES, speculativeMode } from "../../src/config/load-settings.ts";
import { parseFlags, readConfigFile, resolveSettings } from "../../src/config/resolve.ts";
import { serveSettings, type Setting } from "../../src/config/settings.ts";
import type { ModelDescriptor } from "../../src/engines/types.ts";
import { InvalidRequestError } from "../../src/errors.ts";
import type { GgufValue } from "../../src/gguf/reader.ts";
import { vocabularyMismatch } from "../../src/gguf/vocab.ts";
import type { ModelCatalog } from "../../src/models/catalog.ts";
import { parallelFor, resolveSpeculative, sameSpeculative } from "../../src/scheduler/speculative.ts";
import { fakeApp } from "../fakes/fake-app.ts";
import { ensureFixtures } from "../fixtures/models.ts";
import { parseExposition } from "../helpers/exposition.ts";

const parseServe = (argv: string[], env: NodeJS.ProcessEnv = {}) => resolveSettings(serveSettings, parseFlags(argv, serveSettings), env, { values: {}, models: {} });

describe("speculative load settings", () => {
  test("one list of modes and one draft bound for the schema, the admin API (load and PATCH), lmx load and lmx serve", () => {
    for (const mode of SPECULATIVE_MODES) {
      expect(v.parse(LoadSettings, { speculative: mode })).toEqual({ speculative: mode });
      expect(loadSettingsFromBody(v.parse(LoadBody, { speculative: mode }))).toEqual({ speculative: mode });
    }
    for (const bad of ["on", true, 1, ""]) {
      expect(v.safeParse(LoadBody, { speculative: bad }).success).toBe(false);
      expect(v.safeParse(PatchModelBody, { load_defaults: { speculative: bad } }).success).toBe(false);
    }
    expect(v.safeParse(LoadBody, { draft: "x".repeat(DRAFT_MAX_LENGTH) }).success).toBe(true);
    for (const bad of ["", "x".repeat(DRAFT_MAX_LENGTH + 1), 3, null]) expect(v.safeParse(LoadBody, { draft: bad }).success).toBe(false);
    expect(loadSettingsToBody({ speculative: "draft", draft: "tiny" })).toEqual({ speculative: "draft", draft: "tiny" });
    for (const settings of [loadFlags, serveSettings] as readonly (readonly Setting[])[]) {
      const s = settings.find((x) => x.key === "speculative");
      expect(s?.kind === "string" ? s.choices : undefined).toEqual(SPECULATIVE_MODES);
      expect(settings.find((x) => x.key === "draft")?.kind).toBe("string");
    }
  });

  test("lmx serve: flags, LMX_* env, --help; unset means off", () => {
    expect(parseServe(["--speculative", "lookup"]).speculative).toBe("lookup");
    expect(parseServe([], { LMX_SPECULATIVE: "draft", LMX_DRAFT: "tiny" })).toMatchObject({ speculative: "draft", draft: "tiny" });
    expect(parseServe([]).speculative).toBeUndefined();
    expect(() => parseServe(["--speculative", "fast"])).toThrow(/--speculative: value "fast" is not one of off, lookup, draft/);
    expect(serveSettings.find((s) => s.key === "draft")?.description).toMatch(/Draft model/);
  });

  test("config.json per model", () => {
    const home = mkdtempSync(join(tmpdir(), "lmx-spec-"));
    writeFileSync(join(home, "config.json"), JSON.stringify({ models: { a: { speculative: "lookup" }, b: { draft: "/m/tiny.gguf" } } }));
    expect(readConfigFile(home).models.a).toEqual({ load: { speculative: "lookup" } });
    expect(readConfigFile(home).models.b).toEqual({ load: { draft: "/m/tiny.gguf" } });
    writeFileSync(join(home, "config.json"), JSON.stringify({ models: { a: { speculative: "always" } } }));
    expect(() => readConfigFile(home)).toThrow(/models\.a\.speculative/);
  });

  test("the mode: speculative when set, else draft when a draft is named, else off", () => {
    expect(speculativeMode({})).toBe("off");
    expect(speculativeMode({ draft: "d" })).toBe("draft");
    expect(speculativeMode({ draft: "d", speculative: "lookup" })).toBe("lookup");
    expect(speculativeMode({ draft: "d", speculative: "off" })).toBe("off");
  });
});

describe("draft vocabulary", () => {
  const tokens = (list: string[]): GgufValue => ({ itemType: "string", length: list.length, strings: list });
  const meta = (list: string[], extra: Record<string, GgufValue> = {}) => new Map<string, GgufValue>([
    ["tokenizer.ggml.model", "llama"], ["tokenizer.ggml.bos_token_id", 1], ["tokenizer.ggml.eos_token_id", 2], ["tokenizer.ggml.tokens", tokens(list)],
    ...Object.entries(extra),
  ]);
  const vocab = Array.from({ length: 300 }, (_, i) => `t${i}`);

  test("the same vocabulary fits; a few padding tokens more and different control tokens below id 5 still fit", () => {
    expect(vocabularyMismatch(meta(vocab), meta(vocab))).toBeUndefined();
    expect(vocabularyMismatch(meta(vocab), meta([...vocab, ...Array.from({ length: 100 }, (_, i) => `pad${i}`)]))).toBeUndefined();
    expect(vocabularyMismatch(meta(vocab), meta(["<x>", ...vocab.slice(1)]))).toBeUndefined();
  });

  test("another tokenizer, other special tokens, other sizes or other token texts do not", () => {
    expect(vocabularyMismatch(meta(vocab), meta(vocab, { "tokenizer.ggml.model": "gpt2" }))).toMatch(/tokenizer\.ggml\.model differs/);
    expect(vocabularyMismatch(meta(vocab), meta(vocab, { "tokenizer.ggml.eos_token_id": 3 }))).toMatch(/eos_token_id differs/);
    expect(vocabularyMismatch(meta(vocab), meta(vocab, { "tokenizer.ggml.add_bos_token": true }))).toMatch(/add_bos_token differs/);
    expect(vocabularyMismatch(meta(vocab), meta([...vocab, ...Array.from({ length: 129 }, (_, i) => `pad${i}`)]))).toMatch(/sizes differ \(300 vs 429/);
    expect(vocabularyMismatch(meta(vocab), meta(vocab.map((t, i) => (i === 200 ? "other" : t))))).toBe("token 200 differs");
    expect(vocabularyMismatch(meta(vocab), new Map([...meta(vocab)].filter(([k]) => k !== "tokenizer.ggml.tokens")))).toMatch(/missing/);
  });
});

describe("resolving a load's speculative decoding", () => {
  const fx = ensureFixtures();
  const stories: ModelDescriptor = { id: "stories", format: "gguf", path: fx.stories260K };
  const qwen: ModelDescriptor = { id: "qwen", format: "gguf", path: fx.qwen2Tiny };
  const mlx: ModelDescriptor = { id: "mlx-m", format: "mlx", path: "/nowhere" };
  const catalog = { get: (id: string) => [stories, qwen, mlx].find((d) => d.id === id) } as unknown as ModelCatalog;
  const resolve = (d: ModelDescriptor, merged: LoadSettings, own: LoadSettings = merged, fromApi: LoadSettings = own) => resolveSpeculative(d, catalog, { merged, own, fromApi });
  const refusal = (f: () => unknown): InvalidRequestError => {
    try {
      f();
    } catch (err) {
      if (err instanceof InvalidRequestError) return err;
      throw err;
    }
    throw new Error("not refused");
  };

  test("off and lookup need nothing more", () => {
    expect(resolve(stories, {})).toBeUndefined();
    expect(resolve(stories, { speculative: "off", draft: "stories" })).toBeUndefined();
    expect(resolve(stories, { speculative: "lookup" })).toEqual({ mode: "lookup" });
  });

  test("a draft by model id resolves to its file; by path only from the operator's settings", () => {
    expect(resolve(stories, { draft: "stories" })).toEqual({ mode: "draft", draftId: "stories", draftPath: fx.stories260K });
    expect(resolve(stories, { draft: fx.stories260K }, {}, {})).toEqual({ mode: "draft", draftId: "stories260K", draftPath: fx.stories260K });
    expect(refusal(() => resolve(stories, { draft: fx.stories260K }, { draft: fx.stories260K }, { draft: fx.stories260K })).code).toBe("model_not_found");
    expect(refusal(() => resolve(stories, { draft: "/nowhere/x.gguf" }, {}, {})).message).toMatch(/does not exist/);
    expect(refusal(() => resolve(stories, { draft: "nope" })).code).toBe("model_not_found");
    expect(refusal(() => resolve(stories, { speculative: "draft" })).code).toBe("draft_model_missing");
    expect(refusal(() => resolve(stories, { draft: "mlx-m" })).code).toBe("draft_model_mismatch");
  });

  test("a draft with another vocabulary is refused, naming both models", () => {
    const err = refusal(() => resolve(stories, { draft: "qwen" }));
    expect([err.status, err.code, err.param]).toEqual([400, "draft_vocabulary_mismatch", "draft"]);
    expect(err.message).toContain("'qwen' cannot draft for 'stories'");
  });

  test("MLX: an MLX draft by id from the model's own settings; lookup, GGUF drafts and loads across nodes refused; the server-wide default left to GGUF models", () => {
    expect(resolve(mlx, { speculative: "lookup" }, {})).toBeUndefined();
    expect(resolve(mlx, { draft: "stories" }, {})).toBeUndefined();
    const err = refusal(() => resolve(mlx, { speculative: "lookup" }, { speculative: "lookup" }));
    expect([err.status, err.code, err.param]).toEqual([400, "unsupported_parameter", "speculative"]);
    expect(resolve(mlx, { draft: "mlx-m" }, { draft: "mlx-m" })).toEqual({ mode: "draft", draftId: "mlx-m", draftPath: "/nowhere" });
    // The server-wide draft is a GGUF model's: an MLX model names its own.
    expect(refusal(() => resolve(mlx, { speculative: "draft", draft: "stories" }, { speculative: "draft" })).code).toBe("draft_model_missing");
    expect(refusal(() => resolve(mlx, { draft: "stories" }, { draft: "stories" })).code).toBe("draft_model_mismatch");
    expect(refusal(() => resolve(mlx, { draft: "/nowhere/x.gguf" }, { draft: "/nowhere/x.gguf" }, {})).code).toBe("model_not_found");
    expect(refusal(() => resolveSpeculative(mlx, catalog, { merged: { draft: "mlx-m" }, own: { draft: "mlx-m" }, fromApi: {} }, true)).message).toContain("across nodes");
    expect(resolve(mlx, { speculative: "lookup" }, { speculative: "off" })).toBeUndefined();
  });

  test("MLX with a draft: one sequence; a larger parallel asked for the model is refused", () => {
    const draft = { mode: "draft" as const, draftId: "mlx-m", draftPath: "/nowhere" };
    expect(parallelFor(mlx, draft, {}, 4)).toBe(1);
    expect(parallelFor(mlx, draft, { parallel: 1 }, 1)).toBe(1);
    expect(refusal(() => parallelFor(mlx, draft, { parallel: 2 }, 2)).param).toBe("parallel");
    expect(parallelFor(mlx, undefined, { parallel: 2 }, 2)).toBe(2);
    expect(parallelFor(stories, draft, { parallel: 2 }, 2)).toBe(2);
  });

  test("a loaded model is reused only with the same decoding", () => {
    const draft = { mode: "draft" as const, draftId: "a", draftPath: "/a.gguf" };
    expect(sameSpeculative(undefined, undefined)).toBe(true);
    expect(sameSpeculative(undefined, { mode: "lookup" })).toBe(false);
    expect(sameSpeculative({ mode: "lookup" }, { mode: "lookup" })).toBe(true);
    expect(sameSpeculative({ mode: "lookup" }, draft)).toBe(false);
    expect(sameSpeculative(draft, { ...draft, draftId: "b" })).toBe(true);
    expect(sameSpeculative(draft, { ...draft, draftPath: "/b.gguf" })).toBe(false);
  });
});

test("timings name the counts as llama-server does, and only when speculative decoding ran", () => {
  const timings = { prefillMs: 1, decodeMs: 2, prefillTokensPerSecond: 3, decodeTokensPerSecond: 4 };
  expect(timingsOf({ usage: { promptTokens: 5, completionTokens: 6 }, timings })).not.toHaveProperty("draft_n");
  expect(timingsOf({ usage: { promptTokens: 5, completionTokens: 6, draftTokens: 9, draftAcceptedTokens: 4 }, timings })).toMatchObject({ draft_n: 9, draft_n_accepted: 4 });
});

test("the engine's counts reach the chat timings, streamed or not, and /metrics", async () => {
  await using f = fakeApp([{ id: "m", script: () => ({ steps: [{ text: "Hello" }, { text: " there" }], drafts: { draftTokens: 5, draftAcceptedTokens: 3 } }) }]);
  const messages = [{ role: "user", content: "hi" }];
  const r = (await (await f.post("/v1/chat/completions", { model: "m", messages })).json()) as { timings: Record<string, number> };
  expect(r.timings).toMatchObject({ draft_n: 5, draft_n_accepted: 3 });
  const sse = await (await f.post("/v1/chat/completions", { model: "m", messages, stream: true, stream_options: { include_usage: true } })).text();
  const last = JSON.parse(sse.split("\n\n").filter((b) => b.startsWith("data: {")).at(-1)!.slice(6)) as { timings: Record<string, number> };
  expect(last.timings).toMatchObject({ draft_n: 5, draft_n_accepted: 3 });
  const m = parseExposition(await (await f.request("/metrics")).text());
  expect(m.value("lmx_draft_tokens_total", { model: "m" })).toBe(10);
  expect(m.value("lmx_draft_accepted_tokens_total", { model: "m" })).toBe(6);
});

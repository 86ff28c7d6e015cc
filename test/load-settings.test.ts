// One vocabulary for load settings: the same bounds and meaning whether the settings come from
// config.json, `lmx load` flags, the admin API or the registry.

import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { LoadBody, loadSettingsFromBody, loadSettingsToBody, PatchModelBody } from "../src/api/admin/schemas.ts";
import { loadFlags } from "../src/cli/commands/load.ts";
import { parseFlags, readConfigFile, resolveSettings } from "../src/config/resolve.ts";
import { serveSettings, type Setting } from "../src/config/settings.ts";
import { FLASH_ATTENTION_MODES, LOAD_SETTING_BOUNDS, layerLoadSettings, LoadSettings } from "../src/config/load-settings.ts";
import { MlxEngine } from "../src/engines/mlx/engine.ts";
import { ModelCatalog } from "../src/models/catalog.ts";
import { ModelRegistry } from "../src/models/registry.ts";
import type { MlxRuntime } from "../src/runtimes/mlx.ts";
import { Scheduler } from "../src/scheduler/scheduler.ts";
import { openDb } from "../src/store/db.ts";
import { models } from "../src/store/schema.ts";

const parseCli = (argv: string[]) => resolveSettings(serveSettings, parseFlags(argv, serveSettings), {}, { values: {}, models: {} });

describe("load settings", () => {
  test("layers: later wins, an unset field never hides an earlier value", () => {
    expect(layerLoadSettings({ contextLength: 512, threads: 2 }, undefined, { threads: undefined, parallel: 3 }, { ttl: 0 }))
      .toEqual({ contextLength: 512, threads: 2, parallel: 3, ttl: 0 });
  });

  test("one set of bounds for the schema, the admin API (load and PATCH), config.json, lmx load and lmx serve", () => {
    for (const [key, { min, max }] of Object.entries(LOAD_SETTING_BOUNDS) as [keyof LoadSettings, { min: number; max: number }][]) {
      expect(v.safeParse(LoadSettings, { [key]: min }).success).toBe(true);
      expect(v.safeParse(LoadSettings, { [key]: max }).success).toBe(true);
      expect(v.safeParse(LoadSettings, { [key]: min - 1 }).success).toBe(false);
      expect(v.safeParse(LoadSettings, { [key]: max + 1 }).success).toBe(false);
      expect(v.safeParse(LoadSettings, { [key]: min + 0.5 }).success).toBe(false);
      const wire = Object.keys(loadSettingsToBody({ [key]: 1 })).find((k) => loadSettingsToBody({ [key]: 1 })[k as keyof ReturnType<typeof loadSettingsToBody>] === 1)!;
      expect(v.safeParse(LoadBody, { [wire]: max }).success).toBe(true);
      expect(v.safeParse(LoadBody, { [wire]: max + 1 }).success).toBe(false);
      expect(v.safeParse(PatchModelBody, { load_defaults: { [wire]: max + 1 } }).success).toBe(false);
      const flag: Setting = loadFlags.find((s) => s.key === (key === "contextLength" ? "ctx" : key))!;
      expect([flag.min, flag.max]).toEqual([min, max]);
    }
    for (const key of ["ctx", "parallel", "threads", "ttl"] as const) {
      const s: Setting = serveSettings.find((x) => x.key === key)!;
      expect([s.min, s.max]).toEqual(Object.values(LOAD_SETTING_BOUNDS[key === "ctx" ? "contextLength" : key]));
    }
  });

  test("the wire names map both ways without loss", () => {
    const s = { contextLength: 2048, parallel: 2, threads: 3, gpuLayers: 0, ttl: 60 };
    expect(loadSettingsToBody(s)).toEqual({ context_length: 2048, parallel: 2, threads: 3, gpu_layers: 0, ttl: 60 });
    expect(loadSettingsFromBody(loadSettingsToBody(s))).toEqual(s);
    expect(loadSettingsFromBody({ parallel: 2 })).toEqual({ parallel: 2 });
  });

  test("config.json names the context ctx and takes every load setting, within the same bounds", () => {
    const home = mkdtempSync(join(tmpdir(), "lmx-ls-"));
    writeFileSync(join(home, "config.json"), JSON.stringify({ models: { a: { ctx: 0, gpuLayers: 4, ttl: 30 }, b: { path: "/m/b.gguf" } } }));
    const { models } = readConfigFile(home);
    expect(models.a).toEqual({ load: { contextLength: 0, gpuLayers: 4, ttl: 30 } });
    expect(models.b).toEqual({ path: "/m/b.gguf", load: {} });
    writeFileSync(join(home, "config.json"), JSON.stringify({ models: { a: { parallel: 65 } } }));
    expect(() => readConfigFile(home)).toThrow(/models\.a\.parallel/);
  });

  test("flash attention: one list of modes for the schema, the admin API, config.json, lmx load and lmx serve", () => {
    for (const mode of FLASH_ATTENTION_MODES) {
      expect(v.parse(LoadSettings, { flashAttention: mode })).toEqual({ flashAttention: mode });
      expect(loadSettingsFromBody(v.parse(LoadBody, { flash_attention: mode }))).toEqual({ flashAttention: mode });
    }
    expect(v.safeParse(LoadBody, { flash_attention: "yes" }).success).toBe(false);
    expect(v.safeParse(LoadBody, { flash_attention: true }).success).toBe(false);
    expect(v.safeParse(PatchModelBody, { load_defaults: { flash_attention: "sometimes" } }).success).toBe(false);
    expect(loadSettingsToBody({ flashAttention: "off" })).toEqual({ flash_attention: "off" });
    for (const settings of [loadFlags, serveSettings] as readonly (readonly Setting[])[]) {
      const s = settings.find((x) => x.key === "flashAttention");
      expect(s?.kind === "string" ? s.choices : undefined).toEqual(FLASH_ATTENTION_MODES);
    }
    expect(parseCli(["--flash-attention", "off"]).flashAttention).toBe("off");
    expect(parseCli([]).flashAttention).toBe("auto");
    expect(() => parseCli(["--flash-attention", "fast"])).toThrow(/--flash-attention: value "fast" is not one of auto, on, off/);
    const home = mkdtempSync(join(tmpdir(), "lmx-ls-fa-"));
    writeFileSync(join(home, "config.json"), JSON.stringify({ models: { a: { flashAttention: "on" } } }));
    expect(readConfigFile(home).models.a).toEqual({ load: { flashAttention: "on" } });
    writeFileSync(join(home, "config.json"), JSON.stringify({ models: { a: { flashAttention: "maybe" } } }));
    expect(() => readConfigFile(home)).toThrow(/models\.a\.flashAttention/);
  });

  test("the scheduler layers request > saved defaults > config.json > server settings > model metadata", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lmx-ls-model-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "qwen2", hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 2048 }));
    writeFileSync(join(dir, "model.safetensors"), new Uint8Array(16));
    const db = openDb(":memory:");
    const registry = new ModelRegistry(db);
    registry.upsert({ id: "m", format: "mlx", path: dir, origin: "import", sourceRepo: null, revision: null });
    // Saved by `lmx load --parallel 2 --save`: only what was given is kept, so config.json's threads still apply.
    registry.setLoadDefaults("m", { parallel: 2 });
    const catalog = new ModelCatalog({ modelsDir: join(dir, "none"), explicit: [], configured: {}, registered: () => registry.descriptors(), aliases: () => new Map() });
    const scheduler = new Scheduler(catalog, { mlx: new MlxEngine({} as MlxRuntime) }, {
      load: { parallel: 4, threads: 1, ttl: 0 }, queueLimit: 1, memoryBudget: 1 << 30,
    }, { m: { threads: 3, contextLength: 0 } }, { savedDefaults: (id) => registry.savedDefaults(id) });
    try {
      const d = catalog.get("m")!;
      expect(await scheduler.resolveLoad(d)).toEqual({ contextLength: 2048, parallel: 2, threads: 3, gpuLayers: undefined, flashAttention: undefined, batchSize: undefined, ttl: 0 });
      expect((await scheduler.resolveLoad(d, { flashAttention: "off" })).flashAttention).toBe("off");
      expect(await scheduler.resolveLoad(d, { contextLength: 512, threads: 0, ttl: 9 })).toMatchObject({ contextLength: 512, parallel: 2, threads: 1, ttl: 9 });
      // A saved value outside today's bounds is ignored rather than loaded with.
      db.update(models).set({ loadDefaults: { parallel: 1000 } }).run();
      expect(registry.savedDefaults("m")).toBeUndefined();
      expect((await scheduler.resolveLoad(d)).parallel).toBe(4);
    } finally {
      await scheduler.shutdown();
      db.$client.close();
    }
  });
});

// One vocabulary for load settings: the same bounds and meaning whether the settings come from
// config.json, `lmx load` flags, the admin API or the registry.

import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { LoadBody, loadSettingsFromBody, loadSettingsToBody, PatchModelBody } from "../src/api/admin-schemas.ts";
import { loadFlags } from "../src/cli/commands/load.ts";
import { readConfigFile } from "../src/config/resolve.ts";
import { serveSettings, type Setting } from "../src/config/settings.ts";
import { LOAD_SETTING_BOUNDS, layerLoadSettings, LoadSettings } from "../src/engines/load-settings.ts";

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
});

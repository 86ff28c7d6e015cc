import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseFlags, readConfigFile, resolveSettings } from "../src/config/resolve.ts";
import { envName, flagName, serveSettings } from "../src/config/settings.ts";
import { UsageError } from "../src/errors.ts";
import { cgroupCpuLimit, cpuInfo } from "../src/util/cpu.ts";

const noFile = { values: {}, models: {} };
const resolve = (argv: string[], env: NodeJS.ProcessEnv = {}, file = noFile) => resolveSettings(serveSettings, parseFlags(argv, serveSettings), env, file);

describe("settings precedence: flag > env > config.json > default", () => {
  test("defaults", () => {
    const c = resolve([]);
    expect(c.host).toBe("127.0.0.1");
    expect(c.port).toBe(1234);
    expect(c.parallel).toBe(4);
    expect(c.model).toEqual([]);
    expect(c.insecureNoAuth).toBe(false);
  });

  test("each layer overrides the next", () => {
    const file = { values: { port: 3000, parallel: 2, threads: 3 }, models: {} };
    const env = { LMX_PORT: "4000", LMX_PARALLEL: "5" };
    const c = resolve(["--port", "5000"], env, file);
    expect(c.port).toBe(5000);
    expect(c.parallel).toBe(5);
    expect(c.threads).toBe(3);
  });

  test("flag forms: --x v, --x=v, booleans, --no-x, repeated lists", () => {
    const c = resolve(["--port=99", "--insecure-no-auth", "--model", "a.gguf", "--model", "b=/x/b,c.gguf"]);
    expect(c.port).toBe(99);
    expect(c.insecureNoAuth).toBe(true);
    expect(c.model).toEqual(["a.gguf", "b=/x/b,c.gguf"]);
    expect(resolve(["--no-insecure-no-auth"], { LMX_INSECURE_NO_AUTH: "1" }).insecureNoAuth).toBe(false);
  });

  test("env lists are comma-separated", () => {
    expect(resolve([], { LMX_API_KEYS: "a, b,,c" }).apiKey).toEqual(["a", "b", "c"]);
  });

  test("bad values are usage errors that name the source", () => {
    expect(() => resolve(["--port", "abc"])).toThrow(/--port.*not an integer/);
    expect(() => resolve(["--port", "70000"])).toThrow(/maximum/);
    expect(() => resolve([], { LMX_PARALLEL: "0" })).toThrow(/LMX_PARALLEL.*minimum/);
    expect(() => resolve(["--bogus"])).toThrow(UsageError);
    expect(() => resolve(["--port"])).toThrow(/needs a value/);
  });

  test("config.json: values, per-model overrides, and clear errors", () => {
    const home = mkdtempSync(join(tmpdir(), "lmx-cfg-"));
    writeFileSync(join(home, "config.json"), JSON.stringify({ port: 4321, models: { small: { path: "/m/small.gguf", threads: 1, ctx: 512 } } }));
    const file = readConfigFile(home);
    expect(resolve([], {}, file).port).toBe(4321);
    expect(file.models.small).toEqual({ path: "/m/small.gguf", load: { threads: 1, contextLength: 512 } });
    writeFileSync(join(home, "config.json"), "{oops");
    expect(() => readConfigFile(home)).toThrow(/not valid JSON/);
    writeFileSync(join(home, "config.json"), JSON.stringify({ models: { x: { threads: -1 } } }));
    expect(() => readConfigFile(home)).toThrow(/models\.x\.threads/);
  });

  test("names are derived once", () => {
    expect(flagName("insecureNoAuth")).toBe("--insecure-no-auth");
    expect(envName("modelsDir")).toBe("LMX_MODELS_DIR");
    expect(envName("apiKey")).toBe("LMX_API_KEYS");
  });
});

describe("threads", () => {
  test("cgroup v2 quota", () => {
    const root = mkdtempSync(join(tmpdir(), "cg-"));
    writeFileSync(join(root, "cpu.max"), "150000 100000\n");
    expect(cgroupCpuLimit(root)).toBe(1.5);
    writeFileSync(join(root, "cpu.max"), "max 100000\n");
    expect(cgroupCpuLimit(root)).toBeUndefined();
  });

  test("default threads never exceed physical cores or the CPUs available", () => {
    const c = cpuInfo();
    expect(c.defaultThreads).toBeGreaterThanOrEqual(1);
    expect(c.defaultThreads).toBeLessThanOrEqual(c.physicalCores);
    expect(c.defaultThreads).toBeLessThanOrEqual(c.availableCores);
  });
});

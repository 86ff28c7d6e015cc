// scripts/lib/llama-addon.ts without a compiler: the runtime-version check that keeps a compiled
// addon loadable wherever the prebuilt one loads, and putting the addon in place of the prebuilt
// one (and back) in a package's bins folder. The compile itself is tested by `npm ci` and by every
// test that loads the engine (test/token-runs.test.ts needs the addon's generateTokenRuns).
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { buildEngineBundle, isExcludedFromBundle } from "../../scripts/build.ts";
import { llamaPlatform } from "../../src/engines/llama/platform.ts";
import { readTarGz } from "../../src/util/tar.ts";
import { ADDON_FILE, addonKind, installLlamaAddon, newerRuntimeNeeds, PREBUILT_ADDON_FILE, restoreLlamaAddon, runtimeVersions } from "../../scripts/lib/llama-addon.ts";

/** Bytes shaped like an ELF's dynamic strings: names NUL-separated among other data. */
const strings = (...names: string[]) => new TextEncoder().encode(`\x7fELF\0${names.join("\0")}\0`);

describe("runtime versions", () => {
  test("the newest version of each family, compared as numbers", () => {
    const v = runtimeVersions(strings("GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.4", "GLIBCXX_3.4.9", "GLIBCXX_3.4.29", "CXXABI_1.3.9", "CXXABI_1.3", "memcpy"));
    expect(Object.fromEntries(v)).toEqual({ GLIBC: "2.34", GLIBCXX: "3.4.29", CXXABI: "1.3.9" });
  });

  test("a compiled addon asking more than the prebuilt one is named, family by family", () => {
    const prebuilt = strings("GLIBC_2.34", "GLIBCXX_3.4.29", "CXXABI_1.3.9");
    expect(newerRuntimeNeeds(strings("GLIBC_2.32", "GLIBCXX_3.4.29", "CXXABI_1.3.8"), prebuilt)).toEqual([]);
    expect(newerRuntimeNeeds(strings("GLIBC_2.38", "GLIBCXX_3.4.30", "CXXABI_1.3.9"), prebuilt)).toEqual([
      "GLIBC_2.38 (the prebuilt addon needs 2.34)",
      "GLIBCXX_3.4.30 (the prebuilt addon needs 3.4.29)",
    ]);
    expect(newerRuntimeNeeds(strings("GLIBC_2.34", "CXXABI_1.3.15"), strings("GLIBC_2.34"))).toEqual(["CXXABI_1.3.15 (the prebuilt addon needs no CXXABI)"]);
  });
});

describe("the addon in a package's bins folder", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  function bins(): { dir: string; ours: string } {
    const dir = mkdtempSync(join(tmpdir(), "lmx-addon-"));
    dirs.push(dir);
    writeFileSync(join(dir, ADDON_FILE), "prebuilt addon: decodeBatch sampleToken");
    const ours = join(dir, "compiled.node");
    writeFileSync(ours, "compiled addon: decodeBatchAndSampleToken generateTokenRuns");
    return { dir, ours };
  }
  const read = (file: string) => readFileSync(file, "utf8");

  test("install keeps the prebuilt addon beside ours, once; restore puts it back", () => {
    const { dir, ours } = bins();
    expect(addonKind(dir)).toBe("prebuilt");
    expect(installLlamaAddon(ours, dir)).toBe(true);
    expect(addonKind(dir)).toBe("lmx");
    expect(read(join(dir, PREBUILT_ADDON_FILE))).toStartWith("prebuilt addon");
    expect(installLlamaAddon(ours, dir)).toBe(false);

    // A newer compile replaces ours; the kept file stays the prebuilt one.
    writeFileSync(ours, "compiled addon v2: decodeBatchAndSampleToken generateTokenRuns");
    expect(installLlamaAddon(ours, dir)).toBe(true);
    expect(read(join(dir, ADDON_FILE))).toStartWith("compiled addon v2");
    expect(read(join(dir, PREBUILT_ADDON_FILE))).toStartWith("prebuilt addon");

    expect(restoreLlamaAddon(dir)).toBe(true);
    expect(read(join(dir, ADDON_FILE))).toStartWith("prebuilt addon");
    expect(existsSync(join(dir, PREBUILT_ADDON_FILE))).toBe(false);
    expect(restoreLlamaAddon(dir)).toBe(false);
  });

  test("ours with no prebuilt kept is refused rather than kept as the prebuilt one", () => {
    const { dir, ours } = bins();
    writeFileSync(join(dir, ADDON_FILE), "an older compile: decodeBatchAndSampleToken generateTokenRuns");
    expect(() => installLlamaAddon(ours, dir)).toThrow("is not node-llama-cpp's prebuilt addon");
    expect(existsSync(join(dir, PREBUILT_ADDON_FILE))).toBe(false);
  });

  test("the kept prebuilt addon stays out of the engine bundle", () => {
    expect(isExcludedFromBundle("@node-llama-cpp/linux-x64", `bins/linux-x64/${PREBUILT_ADDON_FILE}`)).toBe(true);
    expect(isExcludedFromBundle("@node-llama-cpp/linux-x64", `bins/linux-x64/${ADDON_FILE}`)).toBe(false);
  });

  /** A node_modules tree holding node-llama-cpp and its linux-x64 package, with our addon installed when `installed`. */
  function tree(installed: boolean): { root: string; ours: string } {
    const root = mkdtempSync(join(tmpdir(), "lmx-addon-tree-"));
    dirs.push(root);
    const write = (path: string, text: string) => {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    };
    write("node_modules/node-llama-cpp/package.json", JSON.stringify({ name: "node-llama-cpp", version: "3.21.1", optionalDependencies: { "@node-llama-cpp/linux-x64": "3.21.1" } }));
    write("node_modules/node-llama-cpp/llama/llama.cpp.info.json", JSON.stringify({ tag: "b1" }));
    write("node_modules/@node-llama-cpp/linux-x64/package.json", JSON.stringify({ name: "@node-llama-cpp/linux-x64", version: "3.21.1" }));
    const bins = "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
    write(`${bins}/${ADDON_FILE}`, installed ? "installed compile" : "prebuilt");
    if (installed) write(`${bins}/${PREBUILT_ADDON_FILE}`, "prebuilt");
    write("compiled.node", "fresh compile");
    return { root, ours: join(root, "compiled.node") };
  }
  async function bundledAddon(root: string, addon?: string): Promise<string[]> {
    const bundle = await buildEngineBundle(root, join(root, "out"), llamaPlatform("linux-x64"), { addon });
    const found: string[] = [];
    for await (const entry of readTarGz(Bun.file(bundle.path))) {
      if (entry.type === "file" && entry.path.includes("/bins/")) found.push(`${basename(entry.path)}: ${new TextDecoder().decode(entry.data)}`);
    }
    return found;
  }

  test("the bundle carries the addon it is given, else the prebuilt one, never both", async () => {
    const installed = tree(true);
    expect(await bundledAddon(installed.root, installed.ours)).toEqual([`${ADDON_FILE}: fresh compile`]);
    // --prebuilt-addon after npm ci put ours in node_modules: the kept prebuilt one ships.
    expect(await bundledAddon(installed.root)).toEqual([`${ADDON_FILE}: prebuilt`]);
    const pristine = tree(false);
    expect(await bundledAddon(pristine.root)).toEqual([`${ADDON_FILE}: prebuilt`]);
    expect(await bundledAddon(pristine.root, pristine.ours)).toEqual([`${ADDON_FILE}: fresh compile`]);
  });
});

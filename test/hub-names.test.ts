// Names that could escape the hub cache are refused before anything is written or fetched.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UnsafePathError } from "../src/errors.ts";
import { findCachedFile } from "../src/hub/cache.ts";
import { downloadFiles } from "../src/hub/download.ts";
import { assertInsideCache, validateRepoId, validateRepoPath, validateRevision } from "../src/hub/names.ts";
import { DEMO_REVISION, type FakeHub, demoRepos, startFakeHub } from "./hub/fake-hub.ts";

const MODELS = join(import.meta.dir, "../../shared/models");
const TINY = "ggml-org/tiny-llamas";

let hub: FakeHub;
const dirs: string[] = [];
beforeAll(async () => {
  hub = await startFakeHub({ repos: demoRepos(MODELS) });
});
afterAll(async () => {
  await hub.stop();
});
afterEach(() => {
  hub.clearRequests();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

function refused(fn: () => unknown, mention: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(UnsafePathError);
  expect((caught as Error).message).toContain(mention);
}

async function refusedAsync(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(UnsafePathError);
    return err as Error;
  }
  throw new Error("expected an UnsafePathError");
}

describe("validateRepoId", () => {
  test("accepts the hub's org/name ids", () => {
    for (const id of ["ggml-org/tiny-llamas", "bartowski/Llama-3.2-1B-Instruct-GGUF", "mlx-community/Qwen2.5-0.5B-Instruct-4bit", "a/b", "user_1/model.v2"]) {
      expect(validateRepoId(id)).toBe(id);
    }
  });

  test("refuses traversal, wrong shapes and characters, naming the value", () => {
    refused(() => validateRepoId("../../etc"), '"../../etc"');
    refused(() => validateRepoId("org/.."), '"org/.."');
    refused(() => validateRepoId("org/a..b"), "'..'");
    refused(() => validateRepoId("gpt2"), "org/name");
    refused(() => validateRepoId("a/b/c"), "org/name");
    refused(() => validateRepoId("/etc/passwd"), "org/name");
    refused(() => validateRepoId("org/na me"), "letters, digits");
    refused(() => validateRepoId("org\\name/x"), "letters, digits");
    refused(() => validateRepoId("org/name\0"), "letters, digits");
    refused(() => validateRepoId("org/-name"), "start and end");
    refused(() => validateRepoId("org--x/name"), "'--'");
    refused(() => validateRepoId("org/name.git"), ".git");
    refused(() => validateRepoId(""), "empty");
    refused(() => validateRepoId(`org/${"x".repeat(100)}`), "96");
  });
});

describe("validateRepoPath / validateRevision", () => {
  test("accepts nested relative paths and branch names", () => {
    expect(validateRepoPath("model.gguf")).toBe("model.gguf");
    expect(validateRepoPath("Q4_K_M/model-00001-of-00002.gguf")).toBe("Q4_K_M/model-00001-of-00002.gguf");
    expect(validateRevision("main")).toBe("main");
    expect(validateRevision("refs/pr/1")).toBe("refs/pr/1");
  });

  test("refuses ../, absolute paths, backslashes, NUL, empty segments", () => {
    refused(() => validateRepoPath("../x"), '"../x"');
    refused(() => validateRepoPath("a/../../x"), "'..' segment");
    refused(() => validateRepoPath("./x"), "'.' segment");
    refused(() => validateRepoPath("/abs"), "absolute");
    refused(() => validateRepoPath("a\\b"), "backslash");
    refused(() => validateRepoPath("a\0b"), "NUL");
    refused(() => validateRepoPath("a//b"), "empty path segment");
    refused(() => validateRepoPath("a/"), "empty path segment");
    refused(() => validateRepoPath(""), "empty");
    refused(() => validateRepoPath("C:/x"), "drive");
    refused(() => validateRepoPath("a\nb"), "control");
    refused(() => validateRevision("../../../tmp/x"), "revision");
  });
});

describe("downloadFiles refuses unsafe names before touching the cache or the hub", () => {
  const cases: [string, { repo?: string; files?: string[]; revision?: string }][] = [
    ["../x", { files: ["../x"] }],
    ["/abs", { files: ["/abs"] }],
    ["a\\b", { files: ["a\\b"] }],
    ["../../etc", { repo: "../../etc" }],
    ["../../../tmp/pwned", { revision: "../../../tmp/pwned" }],
  ];
  for (const [bad, o] of cases) {
    test(`refuses ${JSON.stringify(bad)}`, async () => {
      const cache = tempDir("lmx-names-cache-");
      const err = await refusedAsync(downloadFiles({ repo: o.repo ?? TINY, files: o.files ?? ["stories260K.gguf"], revision: o.revision, hubUrl: hub.url, cacheDir: cache }));
      expect(err.message).toContain(JSON.stringify(bad));
      expect(readdirSync(cache)).toEqual([]);
      expect(hub.requests.length).toBe(0);
    });
  }
});

describe("planted symlinks", () => {
  test("a blobs/ folder that is a symlink out of the cache is refused, and nothing lands outside", async () => {
    const cache = tempDir("lmx-names-cache-");
    const outside = tempDir("lmx-names-outside-");
    const repoDir = join(cache, "models--ggml-org--tiny-llamas");
    mkdirSync(repoDir);
    symlinkSync(outside, join(repoDir, "blobs"));
    const err = await refusedAsync(downloadFiles({ repo: TINY, files: ["stories260K.gguf"], hubUrl: hub.url, cacheDir: cache }));
    expect(err.message).toContain("symlink that leads outside the cache");
    expect(err.message).toContain(join(repoDir, "blobs"));
    expect(readdirSync(outside)).toEqual([]);
  });

  test("a repo folder, or a snapshot folder, linked out of the cache is refused", async () => {
    const cache = tempDir("lmx-names-cache-");
    const outside = tempDir("lmx-names-outside-");
    symlinkSync(outside, join(cache, "models--ggml-org--tiny-llamas"));
    await refusedAsync(downloadFiles({ repo: TINY, files: ["stories260K.gguf"], hubUrl: hub.url, cacheDir: cache }));
    expect(readdirSync(outside)).toEqual([]);

    const cache2 = tempDir("lmx-names-cache-");
    const snapshots = join(cache2, "models--ggml-org--tiny-llamas", "snapshots");
    mkdirSync(snapshots, { recursive: true });
    symlinkSync(outside, join(snapshots, DEMO_REVISION));
    await refusedAsync(downloadFiles({ repo: TINY, files: ["stories260K.gguf"], hubUrl: hub.url, cacheDir: cache2 }));
    expect(readdirSync(outside)).toEqual([]);
    // Caught before the file was fetched, not after.
    expect(hub.count({ repo: TINY, file: "stories260K.gguf" })).toBe(0);
  });

  test("looking up a cached file whose snapshot entry leads outside is refused", async () => {
    const cache = tempDir("lmx-names-cache-");
    const outside = tempDir("lmx-names-outside-");
    writeFileSync(join(outside, "secret"), "x");
    const repoDir = join(cache, "models--ggml-org--tiny-llamas");
    mkdirSync(join(repoDir, "snapshots", DEMO_REVISION), { recursive: true });
    mkdirSync(join(repoDir, "refs"));
    writeFileSync(join(repoDir, "refs", "main"), DEMO_REVISION);
    symlinkSync(join(outside, "secret"), join(repoDir, "snapshots", DEMO_REVISION, "stories260K.gguf"));
    await refusedAsync(findCachedFile(cache, TINY, "stories260K.gguf"));
  });

  test("links that stay inside the cache are fine, and the cache root may itself be a link", async () => {
    const real = tempDir("lmx-names-real-");
    const linkParent = tempDir("lmx-names-link-");
    const cache = join(linkParent, "cache");
    symlinkSync(real, cache);
    mkdirSync(join(cache, "models--a--b", "blobs"), { recursive: true });
    mkdirSync(join(cache, "models--a--b", "snapshots", "c"), { recursive: true });
    writeFileSync(join(cache, "models--a--b", "blobs", "x"), "x");
    symlinkSync("../../blobs/x", join(cache, "models--a--b", "snapshots", "c", "f"));
    await assertInsideCache(cache, join(cache, "models--a--b", "snapshots", "c", "f"));
    await assertInsideCache(cache, join(cache, "models--a--b", "blobs", "new"));
    let err: unknown;
    try {
      await assertInsideCache(cache, join(cache, "..", "elsewhere"));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnsafePathError);
  });
});

// The download engine against the fake hub serving the real GGUFs in ../shared/models.

import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChecksumMismatchError, HubAuthError, HubNotFoundError, HubUnavailableError, InsufficientDiskSpaceError } from "../src/errors.ts";
import { findCachedFile, hubCacheDir, listCachedFiles, listCachedRepos } from "../src/hub/cache.ts";
import { type DownloadOptions, type DownloadProgress, downloadFiles } from "../src/hub/download.ts";
import { searchModels } from "../src/hub/search.ts";
import { DEMO_REVISION, type FakeHub, demoRepos, startFakeHub } from "./hub/fake-hub.ts";

const MODELS = join(import.meta.dir, "../../shared/models");
const STORIES = join(MODELS, "stories260K.gguf");
const STORIES_SHA = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";
const STORIES_SIZE = 1185376;
const TINY = "ggml-org/tiny-llamas";
const target = { repo: TINY, file: "stories260K.gguf" };

let hub: FakeHub;
const dirs: string[] = [];

beforeAll(async () => {
  hub = await startFakeHub({ repos: demoRepos(MODELS) });
});
afterAll(async () => {
  await hub.stop();
});
afterEach(() => {
  hub.clearFaults();
  hub.clearRequests();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempCache(): string {
  const dir = mkdtempSync(join(tmpdir(), "lmx-hub-cache-"));
  dirs.push(dir);
  return dir;
}

function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Fast retries so failure paths take milliseconds. */
function opts(cacheDir: string, extra: Partial<DownloadOptions> = {}): DownloadOptions {
  return { repo: TINY, files: ["stories260K.gguf"], hubUrl: hub.url, cacheDir, retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 }, ...extra };
}

const repoDir = (cache: string, repo = TINY) => join(cache, `models--${repo.replace("/", "--")}`);
const incomplete = (cache: string, sha = STORIES_SHA, repo = TINY) => join(repoDir(cache, repo), "blobs", `${sha}.incomplete`);

/** A server that takes every request and never answers it (a hub stalled before its first byte). */
function stallingServer(): { url: string } & AsyncDisposable {
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: () => new Promise<Response>(() => undefined) });
  return { url: `http://127.0.0.1:${server.port}`, [Symbol.asyncDispose]: async () => { await server.stop(true); } };
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    if (err instanceof Error) return err;
    throw err;
  }
  throw new Error("expected the promise to reject");
}

describe("downloadFiles", () => {
  test("downloads into the hub cache layout and verifies the sha256", async () => {
    const cache = tempCache();
    const progress: DownloadProgress[] = [];
    const res = await downloadFiles(opts(cache, { files: ["stories260K.gguf", "README.md"], onProgress: (p) => progress.push(p), progressIntervalMs: 0 }));
    expect(res.commit).toBe(DEMO_REVISION);
    expect(res.offline).toBe(false);
    expect(res.bytesDownloaded).toBe(STORIES_SIZE + 14);
    const [gguf, readme] = res.files;
    expect(gguf?.fromCache).toBe(false);
    expect(gguf?.sha256).toBe(STORIES_SHA);
    expect(sha256File(gguf?.path ?? "")).toBe(sha256File(STORIES));

    const dir = repoDir(cache);
    const pointer = join(dir, "snapshots", DEMO_REVISION, "stories260K.gguf");
    expect(gguf?.path).toBe(pointer);
    expect(lstatSync(pointer).isSymbolicLink()).toBe(true);
    expect(readlinkSync(pointer)).toBe(`../../blobs/${STORIES_SHA}`);
    expect(statSync(join(dir, "blobs", STORIES_SHA)).size).toBe(STORIES_SIZE);
    expect(readFileSync(join(dir, "refs", "main"), "utf8")).toBe(DEMO_REVISION);
    // Small files are stored under their git blob id, like huggingface_hub does.
    const readmeOid = hub.hashes(TINY, "README.md").oid;
    expect(readme?.etag).toBe(readmeOid);
    expect(readlinkSync(readme?.path ?? "")).toBe(`../../blobs/${readmeOid}`);
    expect(readdirSync(join(dir, "blobs")).sort()).toEqual([STORIES_SHA, readmeOid].sort());

    const last = progress.at(-1);
    expect(last?.bytesDone).toBe(STORIES_SIZE + 14);
    expect(last?.bytesTotal).toBe(STORIES_SIZE + 14);
    expect(last?.filesDone).toBe(2);
    expect(last?.etaSeconds).toBe(0);
    expect(progress.some((p) => p.file === "stories260K.gguf" && p.fileBytesTotal === STORIES_SIZE)).toBe(true);
    expect(progress.some((p) => p.bytesPerSecond > 0)).toBe(true);
    const dones = progress.map((p) => p.bytesDone);
    expect(dones).toEqual([...dones].sort((a, b) => a - b));

    expect(await findCachedFile(cache, TINY, "stories260K.gguf")).toMatchObject({ commit: DEMO_REVISION, size: STORIES_SIZE, path: pointer });
  });

  test("a connection cut halfway is resumed with a Range request in the same call", async () => {
    const cache = tempCache();
    hub.cutAfter(target, 600_000);
    const before = hub.transfersFor(target).length;
    const res = await downloadFiles(opts(cache));
    expect(sha256File(res.files[0]?.path ?? "")).toBe(STORIES_SHA);
    const transfers = hub.transfersFor(target).slice(before);
    expect(transfers.length).toBe(2);
    expect(transfers[0]?.range).toBeNull();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(transfers[1]?.range ?? "")?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(600_000);
    expect(transfers[1]?.status).toBe(206);
    expect(res.bytesDownloaded).toBe(STORIES_SIZE);
  });

  test("a new call on the same cache finishes an interrupted .incomplete file (process restart)", async () => {
    const cache = tempCache();
    hub.cutAfter(target, 500_000);
    const first = await rejection(downloadFiles(opts(cache, { retry: { attempts: 1 } })));
    expect(first).toBeInstanceOf(HubUnavailableError);
    const partial = statSync(incomplete(cache)).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThanOrEqual(500_000);
    expect(existsSync(join(repoDir(cache), "blobs", STORIES_SHA))).toBe(false);

    const before = hub.transfersFor(target).length;
    const progress: DownloadProgress[] = [];
    const res = await downloadFiles(opts(cache, { onProgress: (p) => progress.push(p) }));
    const transfers = hub.transfersFor(target).slice(before);
    expect(transfers.map((t) => t.range)).toEqual([`bytes=${partial}-`]);
    expect(sha256File(res.files[0]?.path ?? "")).toBe(STORIES_SHA);
    expect(res.bytesDownloaded).toBe(STORIES_SIZE - partial);
    expect(progress[0]?.bytesDone).toBe(partial);
    expect(existsSync(incomplete(cache))).toBe(false);
  });

  test("if the server ignores Range and answers 200, the download restarts from zero", async () => {
    const cache = tempCache();
    hub.cutAfter(target, 300_000);
    await rejection(downloadFiles(opts(cache, { retry: { attempts: 1 } })));
    expect(statSync(incomplete(cache)).size).toBeGreaterThan(0);
    hub.ignoreRange(target);
    const before = hub.transfersFor(target).length;
    const res = await downloadFiles(opts(cache));
    const t = hub.transfersFor(target).slice(before);
    expect(t.length).toBe(1);
    expect(t[0]?.range).toMatch(/^bytes=\d+-$/);
    expect(t[0]?.status).toBe(200);
    expect(sha256File(res.files[0]?.path ?? "")).toBe(STORIES_SHA);
    expect(statSync(res.files[0]?.path ?? "").size).toBe(STORIES_SIZE);
  });

  test("a stalled transfer hits the idle timeout and resumes", async () => {
    const cache = tempCache();
    hub.stallAfter(target, 200_000);
    const before = hub.transfersFor(target).length;
    const res = await downloadFiles(opts(cache, { idleTimeoutMs: 300 }));
    expect(sha256File(res.files[0]?.path ?? "")).toBe(STORIES_SHA);
    const ranges = hub.transfersFor(target).slice(before).map((t) => t.range);
    expect(ranges.length).toBe(2);
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
  });

  test("a transfer that stalls on every attempt says so while retrying, then fails clearly and registers nothing", async () => {
    const cache = tempCache();
    hub.stallAfter(target, 200_000, { times: 3 });
    const notes: string[] = [];
    const started = Date.now();
    const err = await rejection(downloadFiles(opts(cache, {
      idleTimeoutMs: 300,
      progressIntervalMs: 0,
      onProgress: (p) => { if (p.retrying && notes.at(-1) !== p.retrying) notes.push(p.retrying); },
    })));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err).toBeInstanceOf(HubUnavailableError);
    expect(err.message).toMatch(/no data for 0\.3 s \(gave up after 3 attempts\)/);
    expect(notes).toEqual(["no data for 0.3 s, retrying 2/3", "no data for 0.3 s, retrying 3/3"]);
    // The partial file stays for a later resume; nothing is in the snapshot a loader would open.
    expect(existsSync(join(repoDir(cache), "snapshots"))).toBe(false);
    expect(existsSync(incomplete(cache))).toBe(true);
  });

  test("a hub that accepts the connection and never answers fails the metadata calls in bounded time", async () => {
    await using silent = stallingServer();
    const started = Date.now();
    const err = await rejection(downloadFiles({ ...opts(tempCache()), hubUrl: silent.url, requestTimeoutMs: 300, retry: { attempts: 2, baseDelayMs: 5, maxDelayMs: 20 } }));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err).toBeInstanceOf(HubUnavailableError);
    expect(err.message).toMatch(/gave up after 2 attempts/);
  });

  test("lmx search's hub calls are bounded in time too", async () => {
    await using silent = stallingServer();
    const started = Date.now();
    const err = await rejection(searchModels({ query: "tiny", hubUrl: silent.url, requestTimeoutMs: 300 }));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err.message).toMatch(/searching .* failed: no answer within 0\.3 s/);
  });

  test("an AbortSignal cancels cleanly and leaves the partial file for a later resume", async () => {
    const cache = tempCache();
    hub.stallAfter(target, 400_000);
    const controller = new AbortController();
    const err = await rejection(
      downloadFiles(opts(cache, {
        signal: controller.signal,
        progressIntervalMs: 0,
        onProgress: (p) => {
          if (p.bytesDone >= 400_000) controller.abort();
        },
      })),
    );
    expect(err.name).toBe("AbortError");
    expect(statSync(incomplete(cache)).size).toBe(400_000);
    expect(existsSync(join(repoDir(cache), "snapshots"))).toBe(false);
    hub.clearFaults();
    const before = hub.transfersFor(target).length;
    const res = await downloadFiles(opts(cache));
    expect(hub.transfersFor(target).slice(before).map((t) => t.range)).toEqual(["bytes=400000-"]);
    expect(sha256File(res.files[0]?.path ?? "")).toBe(STORIES_SHA);
  });

  test("a corrupted byte fails the checksum, and the partial file is deleted", async () => {
    const cache = tempCache();
    hub.corrupt(target);
    const err = await rejection(downloadFiles(opts(cache)));
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    const bytes = new Uint8Array(readFileSync(STORIES));
    const mid = Math.floor(bytes.byteLength / 2);
    bytes[mid] = (bytes[mid] ?? 0) ^ 0xff;
    const got = createHash("sha256").update(bytes).digest("hex");
    expect(err.message).toBe(`checksum mismatch for stories260K.gguf, want ${STORIES_SHA} got ${got}`);
    expect(existsSync(incomplete(cache))).toBe(false);
    expect(existsSync(join(repoDir(cache), "blobs", STORIES_SHA))).toBe(false);
    expect(existsSync(join(repoDir(cache), "snapshots"))).toBe(false);
  });

  test("a small (non-LFS) file is verified against its git blob id", async () => {
    const cache = tempCache();
    hub.corrupt({ repo: TINY, file: "README.md" }, { offset: 0 });
    const err = await rejection(downloadFiles(opts(cache, { files: ["README.md"] })));
    expect(err.message).toStartWith(`checksum mismatch for README.md, want ${hub.hashes(TINY, "README.md").oid} got `);
  });

  test("gated repo: 401 without a token says to set HF_TOKEN; with the token it downloads", async () => {
    const cache = tempCache();
    const gated = { repo: "lmx-test/gated-llama" };
    const err = await rejection(downloadFiles(opts(cache, gated)));
    expect(err).toBeInstanceOf(HubAuthError);
    expect(err.message).toStartWith("authentication required for lmx-test/gated-llama: set HF_TOKEN");
    expect(existsSync(incomplete(cache, STORIES_SHA, "lmx-test/gated-llama"))).toBe(false);
    const res = await downloadFiles(opts(cache, { ...gated, token: hub.token }));
    expect(sha256File(res.files[0]?.path ?? "")).toBe(STORIES_SHA);
    // The token went to the hub, and the file was fetched with it.
    expect(hub.requestsFor({ repo: "lmx-test/gated-llama", file: "stories260K.gguf" }).some((r) => r.authorization === `Bearer ${hub.token}`)).toBe(true);
  });

  test("the token goes to the hub but never to a CDN on another origin", async () => {
    await using cdnHub = await startFakeHub({ repos: demoRepos(MODELS), cdnHost: "localhost" });
    const gated = { repo: "lmx-test/gated-llama", file: "stories260K.gguf" };
    const res = await downloadFiles(opts(tempCache(), { repo: gated.repo, hubUrl: cdnHub.url, token: cdnHub.token }));
    expect(sha256File(res.files[0]?.path ?? "")).toBe(STORIES_SHA);
    const seen = cdnHub.requestsFor(gated);
    expect(seen.filter((r) => r.kind === "resolve").every((r) => r.authorization === `Bearer ${cdnHub.token}`)).toBe(true);
    const cdn = seen.filter((r) => r.kind === "cdn");
    expect(cdn.length).toBeGreaterThan(0);
    expect(cdn.every((r) => r.authorization === null)).toBe(true);
  });

  test("private repo without a token, and a wrong token, are authentication errors", async () => {
    const cache = tempCache();
    const err = await rejection(downloadFiles(opts(cache, { repo: "lmx-test/private-llama" })));
    expect(err).toBeInstanceOf(HubAuthError);
    expect(err.message).toContain("authentication required for lmx-test/private-llama: set HF_TOKEN");
    const wrong = await rejection(downloadFiles(opts(cache, { repo: "lmx-test/private-llama", token: "hf_wrong" })));
    expect(wrong).toBeInstanceOf(HubAuthError);
    expect(wrong.message).toContain("denied with the configured HF_TOKEN");
    expect((await rejection(downloadFiles(opts(cache, { token: "not-a-token" })))).message).toContain("start with hf_");
  });

  test("404s name the missing repo or file", async () => {
    const cache = tempCache();
    const repo = await rejection(downloadFiles(opts(cache, { repo: "nobody/nothing" })));
    expect(repo).toBeInstanceOf(HubNotFoundError);
    expect(repo.message).toContain("nobody/nothing");
    expect(repo.message).toContain("Repository not found");
    const file = await rejection(downloadFiles(opts(cache, { files: ["missing.gguf"] })));
    expect(file).toBeInstanceOf(HubNotFoundError);
    expect(file.message).toBe(`${TINY}@main: file missing.gguf not found`);
    const rev = await rejection(downloadFiles(opts(cache, { revision: "v9" })));
    expect(rev).toBeInstanceOf(HubNotFoundError);
    expect(rev.message).toContain("Invalid rev id: v9");
    expect(readdirSync(cache)).toEqual([]);
  });

  test("5xx is retried with back-off, then reported clearly", async () => {
    const cache = tempCache();
    hub.failWith(target, 500, { times: 2 });
    const res = await downloadFiles(opts(cache));
    expect(sha256File(res.files[0]?.path ?? "")).toBe(STORIES_SHA);

    const cache2 = tempCache();
    hub.failWith(target, 503);
    const before = hub.requestsFor(target).length;
    const err = await rejection(downloadFiles(opts(cache2)));
    expect(err).toBeInstanceOf(HubUnavailableError);
    expect(err.message).toBe(`download ${TINY}/stories260K.gguf: the hub answered HTTP 503 (fake hub: injected 503) (gave up after 3 attempts)`);
    expect(hub.requestsFor(target).length - before).toBe(3);

    hub.clearFaults();
    hub.failWith("/api/models/ggml-org/tiny-llamas/revision", 500);
    const meta = await rejection(downloadFiles(opts(tempCache())));
    expect(meta.message).toContain(`look up ${TINY}@main: the hub answered HTTP 500`);
  });

  test("a file already in the cache (huggingface-cli layout) is not downloaded again", async () => {
    const cache = tempCache();
    // Lay it out by hand, as huggingface_hub would have.
    const dir = repoDir(cache);
    mkdirSync(join(dir, "blobs"), { recursive: true });
    mkdirSync(join(dir, "snapshots", DEMO_REVISION), { recursive: true });
    mkdirSync(join(dir, "refs"), { recursive: true });
    copyFileSync(STORIES, join(dir, "blobs", STORIES_SHA));
    symlinkSync(`../../blobs/${STORIES_SHA}`, join(dir, "snapshots", DEMO_REVISION, "stories260K.gguf"));
    writeFileSync(join(dir, "refs", "main"), DEMO_REVISION);

    expect((await findCachedFile(cache, TINY, "stories260K.gguf"))?.size).toBe(STORIES_SIZE);
    const progress: DownloadProgress[] = [];
    const res = await downloadFiles(opts(cache, { onProgress: (p) => progress.push(p) }));
    expect(res.files[0]?.fromCache).toBe(true);
    expect(res.bytesDownloaded).toBe(0);
    expect(progress.at(-1)?.bytesDone).toBe(STORIES_SIZE);
    expect(hub.count({ repo: TINY, file: "stories260K.gguf" })).toBe(0);

    // A blob present under another commit's snapshot is linked, not fetched.
    rmSync(join(dir, "snapshots"), { recursive: true });
    const again = await downloadFiles(opts(cache));
    expect(again.files[0]?.fromCache).toBe(true);
    expect(realpathSync(again.files[0]?.path ?? "")).toBe(realpathSync(join(dir, "blobs", STORIES_SHA)));
    expect(hub.count({ repo: TINY, file: "stories260K.gguf" })).toBe(0);
  });

  test("the cache is found when the hub is unreachable, or with offline set", async () => {
    const cache = tempCache();
    await downloadFiles(opts(cache));
    const down = await downloadFiles(opts(cache, { hubUrl: "http://127.0.0.1:9", retry: { attempts: 1 } }));
    expect(down.offline).toBe(true);
    expect(down.files[0]).toMatchObject({ etag: STORIES_SHA, sha256: STORIES_SHA, size: STORIES_SIZE, fromCache: true });
    expect(down.files[0]?.path).toBe(join(repoDir(cache), "snapshots", DEMO_REVISION, "stories260K.gguf"));
    expect((await downloadFiles(opts(cache, { offline: true }))).files[0]?.fromCache).toBe(true);
    const missing = await rejection(downloadFiles(opts(cache, { offline: true, files: ["README.md"] })));
    expect(missing).toBeInstanceOf(HubUnavailableError);
    expect(missing.message).toContain("not in the cache");
  });

  test("fails before downloading when the disk cannot hold the rest", async () => {
    const cache = tempCache();
    const err = await rejection(downloadFiles(opts(cache, { diskReserveBytes: 2 ** 62 })));
    expect(err).toBeInstanceOf(InsufficientDiskSpaceError);
    expect(err.message).toContain("not enough disk space");
    expect(err.message).toContain("1.1 MiB still to download");
    expect(hub.count({ repo: TINY, file: "stories260K.gguf" })).toBe(0);
  });

  test("split GGUF shards and an MLX snapshot download whole", async () => {
    const cache = tempCache();
    const shards = [1, 2, 3].map((i) => `tiny-split-Q8_0-0000${i}-of-00003.gguf`);
    const split = await downloadFiles(opts(cache, { repo: "lmx-test/tiny-split-GGUF", files: shards }));
    const joined = Buffer.concat(split.files.map((f) => readFileSync(f.path)));
    expect(createHash("sha256").update(joined).digest("hex")).toBe(STORIES_SHA);

    const mlxFiles = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"];
    const mlx = await downloadFiles(opts(cache, { repo: "mlx-community/tiny-mlx-4bit", files: mlxFiles }));
    expect(readdirSync(mlx.snapshotDir).sort()).toEqual(mlxFiles);
    expect(mlx.files.find((f) => f.file === "model.safetensors")?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(mlx.files.find((f) => f.file === "config.json")?.sha256).toBeNull();

    const repos = await listCachedRepos(cache);
    expect(repos.map((r) => r.repo)).toEqual(["lmx-test/tiny-split-GGUF", "mlx-community/tiny-mlx-4bit"]);
    expect(repos[1]?.refs).toEqual({ main: hub.commit("mlx-community/tiny-mlx-4bit") });
    expect(repos[1]?.snapshots[0]?.files.map((f) => f.file).sort()).toEqual(mlxFiles);
    expect(repos[0]?.blobBytes).toBe(STORIES_SIZE);
    expect((await listCachedFiles(cache, "mlx-community/tiny-mlx-4bit"))?.length).toBe(4);
  });

  test("two concurrent downloads of the same file share one transfer", async () => {
    const cache = tempCache();
    const before = hub.transfersFor(target).length;
    const [a, b] = await Promise.all([downloadFiles(opts(cache)), downloadFiles(opts(cache))]);
    expect(a.files[0]?.path).toBe(b.files[0]?.path ?? "");
    expect(hub.transfersFor(target).length - before).toBe(1);
    expect([a.files[0]?.fromCache, b.files[0]?.fromCache].sort()).toEqual([false, true]);
    expect(sha256File(a.files[0]?.path ?? "")).toBe(STORIES_SHA);
  });
});

describe("hub cache location", () => {
  test("HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME, then ~/.cache/huggingface/hub", () => {
    expect(hubCacheDir({ HF_HUB_CACHE: "/a", HF_HOME: "/b" })).toBe("/a");
    expect(hubCacheDir({ HF_HOME: "/b" })).toBe("/b/hub");
    expect(hubCacheDir({ XDG_CACHE_HOME: "/x" })).toBe("/x/huggingface/hub");
    expect(hubCacheDir({})).toMatch(/\.cache\/huggingface\/hub$/);
  });
});

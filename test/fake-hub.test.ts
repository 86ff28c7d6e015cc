// The fake hub must be a faithful stand-in, so these drive it with @huggingface/hub's own
// functions, the same ones the download engine builds on.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { HubApiError, downloadFile, fileDownloadInfo, listFiles, listModels, modelInfo, pathsInfo } from "@huggingface/hub";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEMO_REVISION, type FakeHub, demoRepos, startFakeHub } from "./hub/fake-hub.ts";

const MODELS = join(import.meta.dir, "../../shared/models");
const STORIES_SHA = "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d";

let hub: FakeHub;
beforeAll(async () => {
  hub = await startFakeHub({ repos: demoRepos(MODELS), pageSize: 3, tokensWithoutGatedAccess: ["hf_no_access"] });
});
afterAll(async () => {
  await hub.stop();
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function apiError(p: Promise<unknown>): Promise<HubApiError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof HubApiError) return err;
    throw err;
  }
  throw new Error("expected a HubApiError");
}

describe("fake hub speaks the protocol @huggingface/hub uses", () => {
  test("modelInfo: sha, siblings, tags, gguf", async () => {
    const info = await modelInfo({ name: "ggml-org/tiny-llamas", hubUrl: hub.url, additionalFields: ["sha", "tags", "filePaths"] });
    expect(info.name).toBe("ggml-org/tiny-llamas");
    expect(info.sha).toBe(DEMO_REVISION);
    expect(info.tags).toContain("gguf");
    expect(info.downloads).toBe(1200);
    expect(info.filePaths).toEqual([".gitattributes", "README.md", "stories260K.gguf"]);
    const full = (await (await fetch(`${hub.url}/api/models/ggml-org/tiny-llamas`)).json()) as {
      sha: string;
      siblings: { rfilename: string }[];
      gguf: { architecture: string; total: number; context_length: number };
    };
    expect(full.siblings.map((s) => s.rfilename)).toEqual([".gitattributes", "README.md", "stories260K.gguf"]);
    expect(full.gguf.architecture).toBe("llama");
    expect(full.gguf.total).toBeGreaterThan(200_000);
    // A revision given as the commit itself resolves too; an unknown one is RevisionNotFound.
    expect((await modelInfo({ name: "ggml-org/tiny-llamas", hubUrl: hub.url, revision: DEMO_REVISION, additionalFields: ["sha"] })).sha).toBe(DEMO_REVISION);
    const res = await fetch(`${hub.url}/api/models/ggml-org/tiny-llamas/revision/nope`);
    expect(res.status).toBe(404);
    expect(res.headers.get("x-error-code")).toBe("RevisionNotFound");
  });

  test("listFiles: recursive tree with LFS entries, paginated with Link headers", async () => {
    const files = await collect(listFiles({ repo: "mlx-community/tiny-mlx-4bit", hubUrl: hub.url, recursive: true, expand: true }));
    // 7 files with a page size of 3: the library followed two Link: rel="next" headers.
    expect(files.map((f) => f.path).sort()).toEqual([".gitattributes", "README.md", "config.json", "figure.png", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    const weights = files.find((f) => f.path === "model.safetensors");
    expect(weights?.lfs?.size).toBe(weights?.size);
    expect(weights?.lfs?.oid).toMatch(/^[0-9a-f]{64}$/);
    expect(weights?.lfs?.pointerSize).toBeGreaterThan(100);
    expect(weights?.lastCommit?.id).toBe(hub.commit("mlx-community/tiny-mlx-4bit"));
    const config = files.find((f) => f.path === "config.json");
    expect(config?.lfs).toBeUndefined();
    expect(config?.oid).toMatch(/^[0-9a-f]{40}$/);
    // figure.png is over 1 KB, so it is LFS too.
    expect(files.find((f) => f.path === "figure.png")?.lfs).toBeDefined();
    const pages = hub.requests.filter((r) => r.path === "/api/models/mlx-community/tiny-mlx-4bit/tree/main");
    expect(pages.length).toBe(3);
  });

  test("pathsInfo: known paths answered, unknown ones left out", async () => {
    const info = await pathsInfo({ repo: "ggml-org/tiny-llamas", hubUrl: hub.url, paths: ["stories260K.gguf", "README.md", "missing.gguf"], expand: true });
    expect(info.map((i) => i.path)).toEqual(["stories260K.gguf", "README.md"]);
    expect(info[0]?.lfs?.oid).toBe(STORIES_SHA);
    expect(info[0]?.size).toBe(1185376);
    expect(info[0]?.lastCommit.id).toBe(DEMO_REVISION);
    // The git blob id of a small file is sha1("blob <len>\0" + content), as git computes it.
    const readme = new TextEncoder().encode("# tiny-llamas\n");
    const oid = createHash("sha1").update(`blob ${readme.byteLength}\0`).update(readme).digest("hex");
    expect(info[1]?.oid).toBe(oid);
  });

  test("fileDownloadInfo + downloadFile: LFS via a 302 to the CDN, small files directly", async () => {
    const info = await fileDownloadInfo({ repo: "ggml-org/tiny-llamas", path: "stories260K.gguf", hubUrl: hub.url });
    expect(info?.size).toBe(1185376);
    expect(info?.etag).toBe(`"${STORIES_SHA}"`);
    expect(info?.url).toContain(`/cdn/${STORIES_SHA}`);
    const blob = await downloadFile({ repo: "ggml-org/tiny-llamas", path: "stories260K.gguf", hubUrl: hub.url });
    const bytes = new Uint8Array(await (blob as Blob).arrayBuffer());
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(STORIES_SHA);
    expect(bytes).toEqual(new Uint8Array(readFileSync(join(MODELS, "stories260K.gguf"))));

    const small = await fileDownloadInfo({ repo: "ggml-org/tiny-llamas", path: "README.md", hubUrl: hub.url });
    expect(small?.url).toContain("/ggml-org/tiny-llamas/resolve/main/README.md");
    expect(small?.etag).toBe(`"${hub.hashes("ggml-org/tiny-llamas", "README.md").oid}"`);
    expect(await (await downloadFile({ repo: "ggml-org/tiny-llamas", path: "README.md", hubUrl: hub.url }))?.text()).toBe("# tiny-llamas\n");
    expect(await fileDownloadInfo({ repo: "ggml-org/tiny-llamas", path: "nope.gguf", hubUrl: hub.url })).toBeNull();
  });

  test("resolve headers: X-Linked-Etag/Size, X-Repo-Commit, HEAD, Range on the CDN", async () => {
    const head = await fetch(`${hub.url}/ggml-org/tiny-llamas/resolve/main/stories260K.gguf`, { method: "HEAD", redirect: "manual" });
    expect(head.status).toBe(302);
    expect(head.headers.get("x-linked-etag")).toBe(`"${STORIES_SHA}"`);
    expect(head.headers.get("x-linked-size")).toBe("1185376");
    expect(head.headers.get("x-repo-commit")).toBe(DEMO_REVISION);
    const cdn = head.headers.get("location") ?? "";
    const cdnHead = await fetch(cdn, { method: "HEAD" });
    expect(cdnHead.status).toBe(200);
    expect(cdnHead.headers.get("content-length")).toBe("1185376");
    const tail = await fetch(cdn, { headers: { range: "bytes=1185370-" } });
    expect(tail.status).toBe(206);
    expect(tail.headers.get("content-range")).toBe("bytes 1185370-1185375/1185376");
    expect((await tail.arrayBuffer()).byteLength).toBe(6);
    expect((await fetch(cdn, { headers: { range: "bytes=2000000-" } })).status).toBe(416);
    // A CDN URL that was not handed out by the hub is refused.
    expect((await fetch(cdn.replace(/sig=[0-9a-f]+/, "sig=0000"))).status).toBe(403);
    // raw/ serves the git blob: for an LFS file that is its pointer.
    const raw = await (await fetch(`${hub.url}/ggml-org/tiny-llamas/raw/main/stories260K.gguf`)).text();
    expect(raw).toContain(`oid sha256:${STORIES_SHA}`);
  });

  test("listModels: search and gguf/mlx filters, sorted by downloads", async () => {
    const gguf = await collect(listModels({ hubUrl: hub.url, search: { tags: ["gguf"] }, sort: "downloads" }));
    expect(gguf.map((m) => m.name)).toEqual(["ggml-org/tiny-llamas", "lmx-test/tiny-quants-GGUF", "lmx-test/tiny-split-GGUF", "lmx-test/gated-llama"]);
    expect(gguf.find((m) => m.name === "lmx-test/gated-llama")?.gated).toBe("manual");
    const mlx = await collect(listModels({ hubUrl: hub.url, search: { query: "tiny", tags: ["mlx"] }, additionalFields: ["library_name"] }));
    expect(mlx.map((m) => [m.name, m.library_name])).toEqual([["mlx-community/tiny-mlx-4bit", "mlx"]]);
    expect(await collect(listModels({ hubUrl: hub.url, search: { query: "no-such-thing" } }))).toEqual([]);
    const limited = await collect(listModels({ hubUrl: hub.url, search: { query: "tiny" }, limit: 2 }));
    expect(limited.length).toBe(2);
    // Private repos are listed only for the token's owner.
    const mine = await collect(listModels({ hubUrl: hub.url, search: { query: "private" }, accessToken: hub.token }));
    expect(mine.map((m) => m.name)).toEqual(["lmx-test/private-llama"]);
    expect(await collect(listModels({ hubUrl: hub.url, search: { query: "private" } }))).toEqual([]);
  });

  test("gated and private repos: 401 without the token, 403 for a token without access", async () => {
    // Gated: metadata is public, the bytes are not.
    expect((await modelInfo({ name: "lmx-test/gated-llama", hubUrl: hub.url })).gated).toBe("manual");
    const noToken = await apiError(fileDownloadInfo({ repo: "lmx-test/gated-llama", path: "stories260K.gguf", hubUrl: hub.url }));
    expect(noToken.statusCode).toBe(401);
    expect(noToken.message).toContain("restricted");
    expect(noToken.data).toMatchObject({ error: expect.stringContaining("lmx-test/gated-llama") });
    const denied = await apiError(fileDownloadInfo({ repo: "lmx-test/gated-llama", path: "stories260K.gguf", hubUrl: hub.url, accessToken: "hf_no_access" }));
    expect(denied.statusCode).toBe(403);
    expect((await fileDownloadInfo({ repo: "lmx-test/gated-llama", path: "stories260K.gguf", hubUrl: hub.url, accessToken: hub.token }))?.size).toBe(1185376);
    // Private: invisible without the token.
    expect((await apiError(modelInfo({ name: "lmx-test/private-llama", hubUrl: hub.url }))).statusCode).toBe(401);
    expect((await modelInfo({ name: "lmx-test/private-llama", hubUrl: hub.url, accessToken: hub.token })).private).toBe(true);
    // A token the hub does not know is refused even for public repos.
    expect((await apiError(modelInfo({ name: "ggml-org/tiny-llamas", hubUrl: hub.url, accessToken: "hf_bogus" }))).statusCode).toBe(401);
    const missing = await fetch(`${hub.url}/api/models/nobody/nothing`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get("x-error-code")).toBe("RepoNotFound");
    expect(await missing.json()).toEqual({ error: "Repository not found" });
  });

  test("faults: cut, corrupt, status, ignored Range, per-path request counts", async () => {
    const target = { repo: "lmx-test/tiny-split-GGUF", file: "tiny-split-Q4_0.gguf" };
    const info = await fileDownloadInfo({ repo: target.repo, path: target.file, hubUrl: hub.url });
    if (!info) throw new Error("no info");
    const before = hub.transfersFor(target).length;

    hub.cutAfter(target, 1000);
    const cut = await fetch(info.url);
    await expect(cut.arrayBuffer()).rejects.toThrow();
    const whole = await fetch(info.url);
    expect((await whole.arrayBuffer()).byteLength).toBe(info.size);

    hub.corrupt(target, { offset: 10 });
    const bad = new Uint8Array(await (await fetch(info.url)).arrayBuffer());
    const good = new Uint8Array(readFileSync(join(MODELS, "ggml-vocab-bert-bge.gguf")));
    expect(bad[10]).toBe((good[10] ?? 0) ^ 0xff);
    expect(bad.byteLength).toBe(good.byteLength);
    hub.clearFaults();

    hub.failWith(target, 500, { times: 1 });
    expect((await fetch(`${hub.url}/lmx-test/tiny-split-GGUF/resolve/main/tiny-split-Q4_0.gguf`)).status).toBe(500);
    expect((await fetch(`${hub.url}/lmx-test/tiny-split-GGUF/resolve/main/tiny-split-Q4_0.gguf`, { redirect: "manual" })).status).toBe(302);
    hub.failWith(/^\/api\/models\/lmx-test\/tiny-split-GGUF/, 404);
    expect((await fetch(`${hub.url}/api/models/lmx-test/tiny-split-GGUF`)).status).toBe(404);
    hub.clearFaults();

    hub.ignoreRange(target);
    const ignored = await fetch(info.url, { headers: { range: "bytes=100-" } });
    expect(ignored.status).toBe(200);
    expect((await ignored.arrayBuffer()).byteLength).toBe(info.size);
    hub.clearFaults();

    expect(hub.transfersFor(target).length - before).toBe(4);
    expect(hub.count({ repo: "lmx-test/tiny-split-GGUF", file: "tiny-split-Q8_0-00001-of-00003.gguf" })).toBe(0);
  });
});

// A fake Hugging Face Hub: a real HTTP server speaking the parts of the hub protocol that
// @huggingface/hub and huggingface_hub use, serving real files from disk, with faults that can be
// switched on at run time. Tests start it with startFakeHub(); by hand:
//
//   bun test/hub/fake-hub.ts --repo ggml-org/tiny-llamas=../shared/models [--gated org/name] [--token hf_x]
//   bun test/hub/fake-hub.ts --demo          (the repos the tests use; see demoRepos)
//
// What it implements (and how faithfully) is listed in the comment above `route`.

import { createHash, createHmac, randomBytes } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { parseGguf } from "../fixtures/gguf.ts";

export interface FakeRepo {
  /** Path in repo → absolute path of a file on disk, or the bytes themselves. */
  files: Record<string, string | Uint8Array>;
  /** The commit sha `main` points to; derived from the contents when omitted. */
  revision?: string;
  /** Metadata stays public, downloads need the token (as on the hub). */
  gated?: boolean;
  /** Everything needs the token; without it the repo looks nonexistent (401 RepoNotFound). */
  private?: boolean;
  tags?: string[];
  library?: string;
  downloads?: number;
  likes?: number;
  pipelineTag?: string;
}

export interface FakeHubOptions {
  repos: Record<string, FakeRepo>;
  /** The one token with full access. Must start with hf_ (the client library insists). */
  token?: string;
  /** Valid tokens that were not granted access to gated repos (403 GatedRepo). */
  tokensWithoutGatedAccess?: string[];
  /** Entries per page for tree listings and model search, followed with Link: rel="next". */
  pageSize?: number;
  port?: number;
  /** Print one line per request to stderr. */
  verbose?: boolean;
  /**
   * Host name for CDN URLs. The real CDN is another origin, so a client must not send the token
   * there; naming this server differently (e.g. "localhost") makes that checkable. Default: the
   * hub's own 127.0.0.1.
   */
  cdnHost?: string;
}

export interface RequestRecord {
  method: string;
  /** Decoded path, without the query. */
  path: string;
  query: URLSearchParams;
  kind: "api" | "resolve" | "raw" | "cdn" | "other";
  repo?: string;
  file?: string;
  range: string | null;
  authorization: string | null;
  status: number;
}

/** `{repo, file}` (its resolve and CDN requests), a RegExp tested on the path, or a substring of it. */
export type FaultTarget = { repo: string; file: string } | RegExp | string;

export interface FakeHub {
  url: string;
  port: number;
  token: string;
  /** Every request seen, oldest first. */
  readonly requests: readonly RequestRecord[];
  requestsFor(target: FaultTarget): RequestRecord[];
  /** Content transfers for a target: GETs answered 200/206 with bytes, other than the 1-byte probe of fileDownloadInfo. */
  transfersFor(target: FaultTarget): RequestRecord[];
  count(target: FaultTarget): number;
  /** The next `times` (default 1) transfers of the target close the connection after `bytes` body bytes. */
  cutAfter(target: FaultTarget, bytes: number, opts?: { times?: number }): void;
  /** The next `times` (default 1) transfers send `bytes` body bytes and then hang until the client goes away. */
  stallAfter(target: FaultTarget, bytes: number, opts?: { times?: number }): void;
  /** Serve the target with one byte flipped (default: the middle one), while metadata keeps the true hashes. */
  corrupt(target: FaultTarget, opts?: { offset?: number }): void;
  /** Answer `status` for the next `times` (default: every) request matching the target. */
  failWith(target: FaultTarget, status: number, opts?: { times?: number }): void;
  /** Serve the whole file with 200 even when a Range is asked for (a server without range support). */
  ignoreRange(target: FaultTarget): void;
  clearFaults(): void;
  clearRequests(): void;
  /** Content hashes of a served file: sha256 (the LFS oid) and the git blob sha1. */
  hashes(repo: string, file: string): { sha256: string; oid: string; size: number; lfs: boolean };
  commit(repo: string): string;
  stop(): Promise<void>;
}

interface FileEntry {
  path: string;
  source: string | Uint8Array;
  size: number;
  oid: string;
  sha256: string;
  lfs: boolean;
}

interface RepoState {
  id: string;
  objectId: string;
  cfg: FakeRepo;
  commit: string;
  files: Map<string, FileEntry>;
  createdAt: string;
  lastModified: string;
  gguf: Record<string, unknown> | null;
}

interface Fault {
  target: FaultTarget;
  kind: "cut" | "stall" | "corrupt" | "status" | "ignoreRange";
  remaining: number;
  bytes: number;
  status: number;
  offset: number | null;
}

const LFS_THRESHOLD = 1024;
const GGUF_PARSE_LIMIT = 64 * 1024 * 1024;

function isLfs(path: string, size: number): boolean {
  return size > LFS_THRESHOLD || /\.(gguf|safetensors)$/i.test(path);
}

async function readSource(source: string | Uint8Array, start = 0, end?: number): Promise<Uint8Array> {
  if (typeof source !== "string") return source.subarray(start, end);
  return new Uint8Array(await Bun.file(source).slice(start, end).arrayBuffer());
}

async function hashEntry(path: string, source: string | Uint8Array): Promise<FileEntry> {
  const sha256 = createHash("sha256");
  let size: number;
  if (typeof source === "string") {
    size = statSync(source).size;
    const reader = Bun.file(source).stream().getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      sha256.update(value);
    }
  } else {
    size = source.byteLength;
    sha256.update(source);
  }
  const sha = sha256.digest("hex");
  const lfs = isLfs(path, size);
  // A git blob id hashes the bytes git stores: the pointer file for LFS files, the content otherwise.
  const stored = lfs ? new TextEncoder().encode(lfsPointer(sha, size)) : await readSource(source);
  const oid = createHash("sha1").update(`blob ${stored.byteLength}\0`).update(stored).digest("hex");
  return { path, source, size, oid, sha256: sha, lfs };
}

function lfsPointer(sha256: string, size: number): string {
  return `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`;
}

function tensorCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

// The hub parses the first GGUF of a repo and reports it in model info as `gguf`.
async function ggufSummary(files: Map<string, FileEntry>): Promise<Record<string, unknown> | null> {
  const first = [...files.values()].filter((f) => /\.gguf$/i.test(f.path) && !/mmproj/i.test(f.path)).sort((a, b) => (a.path < b.path ? -1 : 1))[0];
  if (!first || first.size > GGUF_PARSE_LIMIT) return null;
  try {
    const parsed = parseGguf(await readSource(first.source));
    const str = (key: string): string | undefined => {
      const v = parsed.metadata.get(key);
      return v?.type === "string" ? v.value : undefined;
    };
    const num = (key: string): number | undefined => {
      const v = parsed.metadata.get(key);
      if (!v || v.type === "array" || v.type === "string" || v.type === "bool") return undefined;
      return Number(v.value);
    };
    const architecture = str("general.architecture");
    return {
      total: parsed.tensors.reduce((n, t) => n + tensorCount(t.dims), 0),
      architecture,
      context_length: architecture ? num(`${architecture}.context_length`) : undefined,
      chat_template: str("tokenizer.chat_template"),
    };
  } catch {
    return null; // Not a whole GGUF (a shard, or test bytes): the hub reports nothing then either.
  }
}

function fakeCommit(id: string, files: Map<string, FileEntry>): string {
  const h = createHash("sha1").update(id);
  for (const f of [...files.values()].sort((a, b) => (a.path < b.path ? -1 : 1))) h.update(`${f.path}\0${f.oid}\0`);
  return h.digest("hex");
}

async function buildRepo(id: string, cfg: FakeRepo): Promise<RepoState> {
  const files = new Map<string, FileEntry>();
  for (const [path, source] of Object.entries(cfg.files)) files.set(path, await hashEntry(path, source));
  const commit = cfg.revision ?? fakeCommit(id, files);
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`fake hub: revision of ${id} must be 40 hex digits`);
  return {
    id,
    objectId: createHash("sha1").update(`repo:${id}`).digest("hex").slice(0, 24),
    cfg,
    commit,
    files,
    createdAt: "2024-01-01T00:00:00.000Z",
    lastModified: "2024-06-01T00:00:00.000Z",
    gguf: await ggufSummary(files),
  };
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json; charset=utf-8", ...headers } });
}

function hubError(status: number, message: string, code?: string): Response {
  return json({ error: message }, status, code ? { "x-error-code": code, "x-error-message": message } : {});
}

function parseRange(header: string | null, size: number): { start: number; end: number } | "unsatisfiable" | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return null;
  let start: number;
  let end: number;
  if (m[1] === "") {
    // Suffix range: the last N bytes.
    const n = Number(m[2]);
    if (!n) return "unsatisfiable";
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) return "unsatisfiable";
  return { start, end };
}

/** Starts a fake hub on 127.0.0.1. `await using hub = await startFakeHub(...)` stops it at scope end. */
export async function startFakeHub(opts: FakeHubOptions): Promise<FakeHub & AsyncDisposable> {
  const token = opts.token ?? "hf_fake_hub_token";
  const noAccess = new Set(opts.tokensWithoutGatedAccess ?? []);
  const pageSize = opts.pageSize ?? 1000;
  const signingKey = randomBytes(16);
  const repos = new Map<string, RepoState>();
  for (const [id, cfg] of Object.entries(opts.repos)) repos.set(id, await buildRepo(id, cfg));
  const bySha = new Map<string, FileEntry>();
  for (const r of repos.values()) for (const f of r.files.values()) if (f.lfs) bySha.set(f.sha256, f);

  const requests: RequestRecord[] = [];
  let faults: Fault[] = [];
  // Stalled transfers wait on these; clearing faults or stopping releases them.
  const stalls = new Set<() => void>();

  const matches = (target: FaultTarget, rec: RequestRecord): boolean => {
    if (typeof target === "string") return rec.path.includes(target);
    if (target instanceof RegExp) return target.test(rec.path);
    return rec.repo === target.repo && rec.file === target.file;
  };
  const takeFault = (kind: Fault["kind"], rec: RequestRecord, applies: (f: Fault) => boolean = () => true): Fault | undefined => {
    const f = faults.find((x) => x.kind === kind && x.remaining > 0 && matches(x.target, rec) && applies(x));
    if (f) f.remaining--;
    return f;
  };
  const hasFault = (kind: Fault["kind"], rec: RequestRecord): Fault | undefined =>
    faults.find((x) => x.kind === kind && x.remaining > 0 && matches(x.target, rec));

  const sign = (sha: string, repo: string, file: string) =>
    createHmac("sha256", signingKey).update(`${sha}\0${repo}\0${file}`).digest("hex").slice(0, 32);

  type Access = "ok" | Response;
  function access(req: Request, repo: RepoState | undefined, content: boolean): Access {
    const header = req.headers.get("authorization");
    let given: string | null = null;
    if (header) {
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      given = m?.[1] ?? null;
      // The hub rejects unknown tokens outright, even for public repos.
      if (!given || (given !== token && !noAccess.has(given))) return hubError(401, "Invalid credentials in Authorization header");
    }
    if (!repo) return hubError(404, "Repository not found", "RepoNotFound");
    const full = given === token;
    if (repo.cfg.private && !full) {
      return given ? hubError(404, "Repository not found", "RepoNotFound") : hubError(401, "Repository not found", "RepoNotFound");
    }
    if (repo.cfg.gated && content && !full) {
      if (!given) {
        return hubError(401, `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.`, "GatedRepo");
      }
      return hubError(403, `Access to model ${repo.id} is restricted and you are not in the authorized list. Visit ${hubUrl}/${repo.id} to ask for access.`, "GatedRepo");
    }
    return "ok";
  }

  function revisionOf(repo: RepoState, rev: string): string | null {
    return rev === "main" || rev === "HEAD" || rev === repo.commit ? repo.commit : null;
  }

  const revisionNotFound = (rev: string) => hubError(404, `Invalid rev id: ${rev}`, "RevisionNotFound");

  function modelJson(repo: RepoState, expand: string[]): Record<string, unknown> {
    const [author] = repo.id.split("/");
    const tags = new Set(repo.cfg.tags ?? []);
    const paths = [...repo.files.keys()];
    if (paths.some((p) => /\.gguf$/i.test(p))) tags.add("gguf");
    if (paths.some((p) => /\.safetensors$/i.test(p))) tags.add("safetensors");
    if (repo.cfg.library) tags.add(repo.cfg.library);
    tags.add("region:us");
    const full: Record<string, unknown> = {
      _id: repo.objectId,
      id: repo.id,
      modelId: repo.id,
      author,
      sha: repo.commit,
      lastModified: repo.lastModified,
      createdAt: repo.createdAt,
      private: repo.cfg.private ?? false,
      disabled: false,
      gated: repo.cfg.gated ? "manual" : false,
      downloads: repo.cfg.downloads ?? 0,
      likes: repo.cfg.likes ?? 0,
      tags: [...tags],
      pipeline_tag: repo.cfg.pipelineTag ?? "text-generation",
      library_name: repo.cfg.library,
      siblings: paths.sort().map((rfilename) => ({ rfilename })),
      spaces: [],
      usedStorage: [...repo.files.values()].reduce((n, f) => n + f.size, 0),
      ...(repo.gguf ? { gguf: repo.gguf } : {}),
    };
    // With expand=..., the hub answers only the asked-for fields (plus the ids).
    if (expand.length === 0) return full;
    const out: Record<string, unknown> = { _id: full._id, id: full.id };
    for (const key of expand) if (key in full) out[key] = full[key];
    return out;
  }

  function lastCommit(repo: RepoState) {
    return { id: repo.commit, title: "Upload folder using huggingface_hub", date: repo.lastModified };
  }

  function fileJson(repo: RepoState, f: FileEntry, expand: boolean): Record<string, unknown> {
    return {
      type: "file",
      oid: f.oid,
      size: f.size,
      path: f.path,
      ...(f.lfs ? { lfs: { oid: f.sha256, size: f.size, pointerSize: new TextEncoder().encode(lfsPointer(f.sha256, f.size)).byteLength } } : {}),
      ...(expand ? { lastCommit: lastCommit(repo), securityFileStatus: { status: "safe" } } : {}),
    };
  }

  function dirJson(repo: RepoState, path: string, expand: boolean): Record<string, unknown> {
    return {
      type: "directory",
      oid: createHash("sha1").update(`tree:${repo.commit}:${path}`).digest("hex"),
      size: 0,
      path,
      ...(expand ? { lastCommit: lastCommit(repo) } : {}),
    };
  }

  function directories(repo: RepoState): Set<string> {
    const dirs = new Set<string>();
    for (const p of repo.files.keys()) {
      const parts = p.split("/");
      for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
    }
    return dirs;
  }

  function paginate(url: URL, items: unknown[]): Response {
    const offset = Number(Buffer.from(url.searchParams.get("cursor") ?? "", "base64url").toString() || "0");
    const limit = Math.min(pageSize, Number(url.searchParams.get("limit") ?? pageSize) || pageSize);
    const page = items.slice(offset, offset + limit);
    const headers: Record<string, string> = {};
    if (offset + limit < items.length) {
      const next = new URL(url);
      next.searchParams.set("cursor", Buffer.from(String(offset + limit)).toString("base64url"));
      headers.link = `<${next.href}>; rel="next"`;
    }
    return json(page, 200, headers);
  }

  function tree(url: URL, repo: RepoState, path: string): Response {
    const recursive = url.searchParams.get("recursive") === "true" || url.searchParams.get("recursive") === "1";
    const expand = url.searchParams.get("expand") === "true" || url.searchParams.get("expand") === "1";
    const dirs = directories(repo);
    if (path !== "" && !dirs.has(path)) {
      return hubError(404, repo.files.has(path) ? `${path} is a file, not a directory` : `Entry not found: ${path} does not exist on "main"`, "EntryNotFound");
    }
    const prefix = path === "" ? "" : path + "/";
    const under = (p: string) => p.startsWith(prefix) && (recursive || !p.slice(prefix.length).includes("/"));
    const entries: Record<string, unknown>[] = [
      ...[...dirs].filter(under).sort().map((d) => dirJson(repo, d, expand)),
      ...[...repo.files.values()].filter((f) => under(f.path)).sort((a, b) => (a.path < b.path ? -1 : 1)).map((f) => fileJson(repo, f, expand)),
    ];
    return paginate(url, entries);
  }

  async function pathsInfo(req: Request, repo: RepoState): Promise<Response> {
    let paths: string[] = [];
    let expand = false;
    const type = req.headers.get("content-type") ?? "";
    // @huggingface/hub posts JSON; huggingface_hub posts a form. Both are accepted by the hub.
    if (type.includes("application/json")) {
      const body = (await req.json()) as { paths?: unknown; expand?: unknown };
      if (Array.isArray(body.paths)) paths = body.paths.filter((p): p is string => typeof p === "string");
      else if (typeof body.paths === "string") paths = [body.paths];
      expand = body.expand === true || body.expand === "true";
    } else {
      const form = new URLSearchParams(await req.text());
      paths = form.getAll("paths");
      expand = form.get("expand") === "true" || form.get("expand") === "True";
    }
    const dirs = directories(repo);
    const out: Record<string, unknown>[] = [];
    for (const p of paths) {
      const f = repo.files.get(p);
      if (f) out.push(fileJson(repo, f, expand));
      else if (dirs.has(p)) out.push(dirJson(repo, p, expand));
      // Unknown paths are left out, not an error: that is how the hub answers.
    }
    return json(out);
  }

  function listModels(url: URL, req: Request): Response {
    const header = req.headers.get("authorization");
    const authed = header === `Bearer ${token}`;
    if (header && !authed && !noAccess.has(header.replace(/^Bearer\s+/i, ""))) return hubError(401, "Invalid credentials in Authorization header");
    const search = (url.searchParams.get("search") ?? "").toLowerCase();
    const author = url.searchParams.get("author");
    const filters = url.searchParams.getAll("filter").flatMap((f) => f.split(",")).filter(Boolean);
    const expand = url.searchParams.getAll("expand");
    const sort = url.searchParams.get("sort");
    const full = url.searchParams.get("full") === "true";
    let models = [...repos.values()]
      .filter((r) => !r.cfg.private || authed)
      .filter((r) => !search || r.id.toLowerCase().includes(search))
      .filter((r) => !author || r.id.split("/")[0] === author)
      .map((r) => ({ r, m: modelJson(r, []) }))
      .filter(({ m }) => filters.every((f) => (m.tags as string[]).includes(f)));
    if (sort === "downloads" || sort === "likes") {
      const key = sort;
      models = models.sort((a, b) => Number(b.m[key]) - Number(a.m[key]) || (a.r.id < b.r.id ? -1 : 1));
    } else {
      models = models.sort((a, b) => (a.r.id < b.r.id ? -1 : 1));
    }
    const items = models.map(({ r, m }) => {
      if (expand.length > 0) return modelJson(r, expand);
      // The listing's default shape is leaner than model info: no siblings unless full=true.
      const { siblings, gguf, spaces, usedStorage, ...lean } = m;
      return full ? { ...lean, siblings } : lean;
    });
    return paginate(url, items);
  }

  function cdnUrl(f: FileEntry, repo: RepoState): string {
    const q = new URLSearchParams({ repo: repo.id, file: f.path, sig: sign(f.sha256, repo.id, f.path) });
    // The CDN names the file for browsers the way the hub's does.
    q.set("response-content-disposition", `inline; filename="${f.path.split("/").pop()}"`);
    return `${cdnOrigin}/cdn/${f.sha256}?${q}`;
  }

  async function content(req: Request, rec: RequestRecord, f: FileEntry, etag: string, extra: Record<string, string>): Promise<Response> {
    const headers: Record<string, string> = {
      "accept-ranges": "bytes",
      "content-type": "application/octet-stream",
      etag: `"${etag}"`,
      "content-disposition": `inline; filename="${f.path.split("/").pop()}"`,
      ...extra,
    };
    const ignore = hasFault("ignoreRange", rec) !== undefined;
    const range = ignore ? null : parseRange(req.headers.get("range"), f.size);
    if (range === "unsatisfiable") {
      return new Response(null, { status: 416, headers: { ...headers, "content-range": `bytes */${f.size}` } });
    }
    const start = range?.start ?? 0;
    const end = range ? range.end + 1 : f.size;
    const status = range ? 206 : 200;
    if (range) headers["content-range"] = `bytes ${range.start}-${range.end}/${f.size}`;
    if (req.method === "HEAD") return new Response(null, { status, headers: { ...headers, "content-length": String(end - start) } });

    const corruption = hasFault("corrupt", rec);
    // A cut only counts against transfers long enough to be cut, so the 1-byte probe that
    // fileDownloadInfo makes does not use it up.
    const longer = (x: Fault) => x.bytes < end - start;
    const cut = takeFault("cut", rec, longer) ?? takeFault("stall", rec, longer);
    // Bun.serve applies a request's Range to file bodies by itself, so a server that ignores
    // Range has to answer from memory.
    if (!corruption && !cut && !ignore) {
      const body = typeof f.source === "string" ? Bun.file(f.source).slice(start, end) : f.source.slice(start, end);
      return new Response(body, { status, headers });
    }
    const bytes = new Uint8Array(await readSource(f.source, start, end));
    if (corruption) {
      const at = corruption.offset ?? Math.floor(f.size / 2);
      if (at >= start && at < end) bytes[at - start] = (bytes[at - start] ?? 0) ^ 0xff;
    }
    if (!cut) return new Response(bytes, { status, headers });
    // Streamed, so Bun sends it chunked: a fault response has no Content-Length.
    const limit = Math.min(cut.bytes, bytes.byteLength);
    let sent = false;
    let release: (() => void) | null = null;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (!sent) {
          sent = true;
          if (limit > 0) controller.enqueue(bytes.slice(0, limit));
          return;
        }
        if (cut.kind === "stall") {
          await new Promise<void>((done) => {
            release = done;
            stalls.add(done);
          });
        } else {
          // Dropping the connection at once would discard bytes still in the socket buffers, and
          // the client would see less than `bytes`; give them time to arrive first.
          await Bun.sleep(150);
        }
        // Erroring the stream makes Bun drop the connection mid-body (the client sees a reset).
        controller.error(undefined);
      },
      cancel() {
        if (release) {
          stalls.delete(release);
          release();
        }
      },
    });
    return new Response(body, { status, headers });
  }

  // Fills in kind/repo/file before routing, so status faults can target {repo, file}.
  function classify(url: URL, rec: RequestRecord): void {
    const segs = url.pathname.split("/").slice(1).map((s) => decodeURIComponent(s));
    if (segs[0] === "api" && segs[1] === "models") {
      rec.kind = "api";
      if (segs.length >= 4) rec.repo = `${segs[2]}/${segs[3]}`;
    } else if (segs[0] === "cdn") {
      rec.kind = "cdn";
      rec.repo = url.searchParams.get("repo") ?? undefined;
      rec.file = url.searchParams.get("file") ?? undefined;
    } else if ((segs[2] === "resolve" || segs[2] === "raw") && segs.length >= 5) {
      rec.kind = segs[2];
      rec.repo = `${segs[0]}/${segs[1]}`;
      rec.file = segs.slice(4).join("/");
    }
  }

  // Routes (all that the hub client libraries touch for reading models):
  //   GET  /api/models?search&author&filter&sort&limit&expand&full&cursor  model search, Link paging
  //   GET  /api/models/{org}/{name}[/revision/{rev}]?expand=...             model info
  //   GET  /api/models/{org}/{name}/tree/{rev}[/{path}]?recursive&expand    tree listing, Link paging
  //   POST /api/models/{org}/{name}/paths-info/{rev}                         paths info (JSON or form)
  //   GET|HEAD /{org}/{name}/resolve/{rev}/{path}   LFS: 302 to /cdn; else 200/206 with the bytes
  //   GET|HEAD /{org}/{name}/raw/{rev}/{path}       the git blob (the pointer file for LFS files)
  //   GET|HEAD /cdn/{sha256}?repo&file&sig          signed "CDN" URL with Range support
  async function route(req: Request, url: URL, rec: RequestRecord): Promise<Response> {
    const segs = url.pathname.split("/").slice(1).map((s) => decodeURIComponent(s));
    if (segs[0] === "api" && segs[1] === "models") {
      rec.kind = "api";
      if (segs.length === 2 || (segs.length === 3 && segs[2] === "")) {
        if (req.method !== "GET") return hubError(405, "Method not allowed");
        return listModels(url, req);
      }
      const id = `${segs[2]}/${segs[3]}`;
      rec.repo = id;
      const repo = repos.get(id);
      const rest = segs.slice(4);
      const op = rest[0] ?? "";
      const denied = access(req, repo, false);
      if (denied !== "ok") return denied;
      if (!repo) return hubError(404, "Repository not found", "RepoNotFound");
      if (op === "" || op === "revision") {
        if (req.method !== "GET") return hubError(405, "Method not allowed");
        const rev = op === "" ? "main" : (rest[1] ?? "");
        if (!revisionOf(repo, rev)) return revisionNotFound(rev);
        return json(modelJson(repo, url.searchParams.getAll("expand")));
      }
      if (op === "tree") {
        const rev = rest[1] ?? "";
        if (!revisionOf(repo, rev)) return revisionNotFound(rev);
        return tree(url, repo, rest.slice(2).join("/").replace(/\/$/, ""));
      }
      if (op === "paths-info") {
        if (req.method !== "POST") return hubError(405, "Method not allowed");
        const rev = rest[1] ?? "";
        if (!revisionOf(repo, rev)) return revisionNotFound(rev);
        return pathsInfo(req, repo);
      }
      return hubError(404, "Not found");
    }

    if (segs[0] === "cdn") {
      rec.kind = "cdn";
      if (req.method !== "GET" && req.method !== "HEAD") return new Response(null, { status: 405 });
      const sha = segs[1] ?? "";
      const repoId = url.searchParams.get("repo") ?? "";
      const file = url.searchParams.get("file") ?? "";
      rec.repo = repoId;
      rec.file = file;
      const f = bySha.get(sha);
      if (!f || url.searchParams.get("sig") !== sign(sha, repoId, file)) {
        // What S3/CloudFront say to a tampered or foreign signed URL.
        return new Response("<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>", { status: 403, headers: { "content-type": "application/xml" } });
      }
      return content(req, rec, f, sha, {});
    }

    const [org, name, action, rev, ...pathParts] = segs;
    if ((action === "resolve" || action === "raw") && org && name && rev !== undefined && pathParts.length > 0) {
      rec.kind = action;
      const id = `${org}/${name}`;
      const path = pathParts.join("/");
      rec.repo = id;
      rec.file = path;
      if (req.method !== "GET" && req.method !== "HEAD") return hubError(405, "Method not allowed");
      const repo = repos.get(id);
      const denied = access(req, repo, true);
      if (denied !== "ok") return denied;
      if (!repo) return hubError(404, "Repository not found", "RepoNotFound");
      const commit = revisionOf(repo, rev);
      if (!commit) return revisionNotFound(rev);
      const f = repo.files.get(path);
      if (!f) return hubError(404, "Entry not found", "EntryNotFound");
      const common = { "x-repo-commit": commit };
      if (action === "raw" && f.lfs) {
        const pointer = new TextEncoder().encode(lfsPointer(f.sha256, f.size));
        const entry: FileEntry = { ...f, source: pointer, size: pointer.byteLength, lfs: false };
        return content(req, rec, entry, f.oid, common);
      }
      if (f.lfs) {
        return new Response(null, {
          status: 302,
          headers: {
            ...common,
            location: cdnUrl(f, repo),
            "x-linked-etag": `"${f.sha256}"`,
            "x-linked-size": String(f.size),
            etag: `"${f.oid}"`,
            "content-type": "text/plain; charset=utf-8",
          },
        });
      }
      return content(req, rec, f, f.oid, common);
    }
    return hubError(404, "Not found");
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: opts.port ?? 0,
    // A stall must look like one to the client: Bun would otherwise close an idle connection after 10 s.
    idleTimeout: 0,
    async fetch(req) {
      const url = new URL(req.url);
      const rec: RequestRecord = {
        method: req.method,
        path: decodeURIComponent(url.pathname),
        query: url.searchParams,
        kind: "other",
        range: req.headers.get("range"),
        authorization: req.headers.get("authorization"),
        status: 0,
      };
      requests.push(rec);
      let res: Response;
      try {
        classify(url, rec);
        const injected = takeFault("status", rec);
        res = injected ? hubError(injected.status, `fake hub: injected ${injected.status}`) : await route(req, url, rec);
      } catch (err) {
        res = hubError(500, `fake hub: ${err instanceof Error ? err.message : String(err)}`);
      }
      rec.status = res.status;
      if (opts.verbose) process.stderr.write(`${rec.method} ${url.pathname}${url.search} ${rec.range ? `[${rec.range}] ` : ""}→ ${res.status}\n`);
      return res;
    },
  });
  const hubUrl = `http://127.0.0.1:${server.port}`;
  const cdnOrigin = `http://${opts.cdnHost ?? "127.0.0.1"}:${server.port}`;

  const fault = (target: FaultTarget, kind: Fault["kind"], remaining: number, extra: Partial<Fault> = {}) => {
    faults.push({ target, kind, remaining, bytes: 0, status: 0, offset: null, ...extra });
  };
  const repoOf = (id: string) => {
    const r = repos.get(id);
    if (!r) throw new Error(`fake hub has no repo ${id}`);
    return r;
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const release of stalls) release();
    stalls.clear();
    await server.stop(true);
  };

  return {
    url: hubUrl,
    port: server.port ?? 0,
    token,
    requests,
    requestsFor: (target) => requests.filter((r) => matches(target, r)),
    transfersFor: (target) =>
      requests.filter((r) => matches(target, r) && r.method === "GET" && (r.status === 200 || r.status === 206) && ["cdn", "resolve", "raw"].includes(r.kind) && r.range !== "bytes=0-0"),
    count: (target) => requests.filter((r) => matches(target, r)).length,
    cutAfter: (target, bytes, o) => fault(target, "cut", o?.times ?? 1, { bytes }),
    stallAfter: (target, bytes, o) => fault(target, "stall", o?.times ?? 1, { bytes }),
    corrupt: (target, o) => fault(target, "corrupt", Infinity, { offset: o?.offset ?? null }),
    failWith: (target, status, o) => fault(target, "status", o?.times ?? Infinity, { status }),
    ignoreRange: (target) => fault(target, "ignoreRange", Infinity),
    clearFaults: () => {
      faults = [];
      for (const release of stalls) release();
      stalls.clear();
    },
    clearRequests: () => {
      requests.length = 0;
    },
    hashes: (repo, file) => {
      const f = repoOf(repo).files.get(file);
      if (!f) throw new Error(`fake hub repo ${repo} has no file ${file}`);
      return { sha256: f.sha256, oid: f.oid, size: f.size, lfs: f.lfs };
    },
    commit: (repo) => repoOf(repo).commit,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** Where the real GGUFs the tests serve live: ../shared/models beside the repo. */
export const SHARED_MODELS = resolve(import.meta.dir, "../../../shared/models");

export const DEMO_REVISION = "c0ffee0000000000000000000000000000000001";

function splitBytes(bytes: Uint8Array, parts: number): Uint8Array[] {
  const size = Math.ceil(bytes.byteLength / parts);
  return Array.from({ length: parts }, (_, i) => bytes.subarray(i * size, Math.min(bytes.byteLength, (i + 1) * size)));
}

/** A tiny but well-formed safetensors file: u64 header length, JSON header, tensor bytes. */
export function tinySafetensors(): Uint8Array {
  const data = new Float32Array(64).map((_, i) => i / 64);
  let header = JSON.stringify({ __metadata__: { format: "mlx" }, "model.embed.weight": { dtype: "F32", shape: [8, 8], data_offsets: [0, data.byteLength] } });
  header += " ".repeat((8 - (header.length % 8)) % 8);
  const out = new Uint8Array(8 + header.length + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(new TextEncoder().encode(header), 8);
  out.set(new Uint8Array(data.buffer), 8 + header.length);
  return out;
}

/**
 * The repos the hub tests use, built from the real GGUFs in `modelsDir`:
 * - ggml-org/tiny-llamas: stories260K.gguf (as on the real hub) and a README;
 * - lmx-test/tiny-quants-GGUF: the same kind of model "quantized" four ways, plus a projector;
 * - lmx-test/tiny-split-GGUF: stories260K cut into 3 shards (Q8_0) next to an unsplit Q4_0;
 * - mlx-community/tiny-mlx-4bit: config.json, tokenizer files, model.safetensors, a README image;
 * - lmx-test/gated-llama and lmx-test/private-llama: stories260K behind the token.
 */
export function demoRepos(modelsDir = SHARED_MODELS): Record<string, FakeRepo> {
  const model = (name: string) => join(modelsDir, name);
  const text = (s: string) => new TextEncoder().encode(s);
  const stories = new Uint8Array(readFileSync(model("stories260K.gguf")));
  const [s1, s2, s3] = splitBytes(stories, 3);
  if (!s1 || !s2 || !s3) throw new Error("could not split stories260K.gguf");
  const tokenizer = JSON.stringify({ version: "1.0", model: { type: "BPE", vocab: Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`tok${i}`, i])) } });
  return {
    "ggml-org/tiny-llamas": {
      files: { "stories260K.gguf": model("stories260K.gguf"), "README.md": text("# tiny-llamas\n"), ".gitattributes": text("*.gguf filter=lfs diff=lfs merge=lfs -text\n") },
      revision: DEMO_REVISION,
      downloads: 1200,
      likes: 10,
    },
    "lmx-test/tiny-quants-GGUF": {
      files: {
        "tiny-Q4_K_S.gguf": model("ggml-vocab-bert-bge.gguf"),
        "tiny-Q5_K_M.gguf": model("stories260K.gguf"),
        "tiny-Q8_0.gguf": model("ggml-vocab-qwen2.gguf"),
        "tiny-F16.gguf": model("ggml-vocab-llama-bpe.gguf"),
        "mmproj-tiny-F16.gguf": stories.subarray(0, 4096),
        "README.md": text("# tiny quants\n"),
      },
      downloads: 500,
      tags: ["text-generation"],
    },
    "lmx-test/tiny-split-GGUF": {
      files: {
        "tiny-split-Q8_0-00001-of-00003.gguf": s1,
        "tiny-split-Q8_0-00002-of-00003.gguf": s2,
        "tiny-split-Q8_0-00003-of-00003.gguf": s3,
        "tiny-split-Q4_0.gguf": model("ggml-vocab-bert-bge.gguf"),
      },
      downloads: 300,
    },
    "mlx-community/tiny-mlx-4bit": {
      files: {
        "config.json": text(JSON.stringify({ model_type: "llama", hidden_size: 8, num_hidden_layers: 1, quantization: { group_size: 64, bits: 4 } })),
        "tokenizer.json": text(tokenizer),
        "tokenizer_config.json": text(JSON.stringify({ bos_token: "<s>", eos_token: "</s>" })),
        "model.safetensors": tinySafetensors(),
        "README.md": text("# tiny mlx\n![chart](figure.png)\n"),
        "figure.png": new Uint8Array(2048).fill(0x89),
        ".gitattributes": text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n"),
      },
      library: "mlx",
      tags: ["mlx"],
      downloads: 800,
    },
    "lmx-test/gated-llama": { files: { "stories260K.gguf": model("stories260K.gguf") }, gated: true, downloads: 50 },
    "lmx-test/private-llama": { files: { "stories260K.gguf": model("stories260K.gguf") }, private: true },
  };
}

/** Every regular file under `dir`, keyed by its path relative to `dir` (for --repo org/name=DIR). */
export function filesOfDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith(".")) continue;
      const full = join(d, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.isFile()) out[relative(dir, full).split("\\").join("/")] = resolve(full);
    }
  };
  walk(dir);
  return out;
}

if (import.meta.main) {
  const usage = "usage: bun test/hub/fake-hub.ts [--demo] [--repo org/name=DIR ...] [--gated org/name] [--private org/name] [--token hf_...] [--port N] [--quiet]";
  const repos: Record<string, FakeRepo> = {};
  const args = process.argv.slice(2);
  let token: string | undefined;
  let port: number | undefined;
  let verbose = true;
  const flagged: { gated: string[]; private: string[] } = { gated: [], private: [] };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${arg} needs a value\n${usage}`);
      return v;
    };
    if (arg === "--demo") Object.assign(repos, demoRepos());
    else if (arg === "--repo") {
      const spec = value();
      const eq = spec.indexOf("=");
      if (eq < 0) throw new Error(`--repo ${spec}: want org/name=DIR\n${usage}`);
      repos[spec.slice(0, eq)] = { files: filesOfDir(resolve(spec.slice(eq + 1))) };
    } else if (arg === "--gated") flagged.gated.push(value());
    else if (arg === "--private") flagged.private.push(value());
    else if (arg === "--token") token = value();
    else if (arg === "--port") port = Number(value());
    else if (arg === "--quiet") verbose = false;
    else {
      process.stderr.write(`${usage}\n`);
      process.exit(arg === "--help" || arg === "-h" ? 0 : 2);
    }
  }
  for (const id of flagged.gated) if (repos[id]) repos[id].gated = true;
  for (const id of flagged.private) if (repos[id]) repos[id].private = true;
  if (Object.keys(repos).length === 0) {
    process.stderr.write(`${usage}\n`);
    process.exit(2);
  }
  const hub = await startFakeHub({ repos, token, port, verbose });
  process.stdout.write(`${hub.url}\n`);
  process.stderr.write(`fake hub: ${Object.keys(repos).join(", ")}; token ${hub.token}; HF_ENDPOINT=${hub.url}\n`);
  const shutdown = () => void hub.stop().then(() => process.exit(0));
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
}

// Searching the hub for models LMX can run: GGUF repos (llama.cpp) and MLX repos, with their
// files, sizes and quants, and whether each would fit in memory.

import { hubLib, isHubApiError } from "./hub-lib.ts";
import { totalmem } from "node:os";
import { HubAuthError, HubUnavailableError, LmxError, errorMessage } from "../errors.ts";
import { log } from "../log.ts";
import { hubEndpoint } from "./cache.ts";
import { seconds, timeoutFetch } from "./hub-request.ts";
import { type RepoFile, type RepoFormat, type Selection, detectFormat, isMmproj, quantOf, selectFiles } from "./select.ts";

/**
 * Memory needed to run a model ≈ its weights' file size × this. The 20% on top covers the KV
 * cache at a modest context, compute buffers and the runtime itself; long contexts need more.
 */
export const MEMORY_OVERHEAD_FACTOR = 1.2;

export function memoryNeeded(weightBytes: number): number {
  return Math.ceil(weightBytes * MEMORY_OVERHEAD_FACTOR);
}

export function fitsInMemory(weightBytes: number, memoryBytes: number): boolean {
  return memoryNeeded(weightBytes) <= memoryBytes;
}

export interface SearchFile {
  path: string;
  size: number;
  /** Quant tag for GGUF files, null otherwise. */
  quant: string | null;
  mmproj: boolean;
  /** For GGUF model files: whether this file (all its shards) fits; null for other files. */
  fits: boolean | null;
}

export interface SearchResult {
  repo: string;
  format: RepoFormat;
  downloads: number;
  likes: number;
  gated: boolean;
  /** GGUF model files (with mmproj files flagged), or the whole MLX snapshot. */
  files: SearchFile[];
  /** GGUF quants on offer, sorted. */
  quants: string[];
  /** What `lmx pull {repo}` would download, or null if nothing in the repo is pullable. */
  defaultSelection: { quant: string | null; files: string[]; bytes: number; reason: string } | null;
  /** Whether the default selection fits in memoryBytes. */
  fits: boolean | null;
}

export interface SearchOptions {
  query: string;
  /** Default: HF_ENDPOINT or https://huggingface.co. */
  hubUrl?: string;
  token?: string;
  /** Repos to return. Default 20. */
  limit?: number;
  /** Memory to judge fit against. Default: this machine's total RAM. */
  memoryBytes?: number;
  /** Only one format; default both. */
  format?: RepoFormat;
  /** Longest one hub request may take, its body included. Default 30 s. */
  requestTimeoutMs?: number;
}

// How many repo listings run at once: they are small JSON requests, and the hub rate-limits.
const LISTING_CONCURRENCY = 4;

function mapError(err: unknown, hubUrl: string, timeoutMs: number): Error {
  if (err instanceof LmxError) return err;
  if (err instanceof Error && err.name === "TimeoutError") return new HubUnavailableError(`searching ${hubUrl} failed: no answer within ${seconds(timeoutMs)}`);
  if (isHubApiError(err)) {
    if (err.statusCode === 401 || err.statusCode === 403) return new HubAuthError(`the hub refused the search: set a valid HF_TOKEN (HTTP ${err.statusCode})`);
    return new HubUnavailableError(`searching ${hubUrl} failed: HTTP ${err.statusCode}`);
  }
  return new HubUnavailableError(`searching ${hubUrl} failed: ${errorMessage(err)}`);
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

interface Candidate {
  repo: string;
  downloads: number;
  likes: number;
  gated: boolean;
  tagFormat: RepoFormat;
}

function describeRepo(c: Candidate, listing: RepoFile[], memoryBytes: number): SearchResult | null {
  const format = detectFormat(listing) ?? null;
  if (!format) return null;
  let selection: Selection | null = null;
  try {
    selection = selectFiles(c.repo, listing, { prefer: c.tagFormat });
  } catch {
    selection = null; // Listed anyway: the user may still pick a file by name.
  }
  const effective = selection?.format ?? format;
  let files: SearchFile[];
  if (effective === "gguf") {
    // Split GGUFs are judged as a whole: a shard alone fits, the model may not.
    const groupBytes = new Map<string, number>();
    const keyOf = (p: string) => p.replace(/-\d{5}-of-\d{5}\.gguf$/i, ".gguf");
    for (const f of listing) if (/\.gguf$/i.test(f.path)) groupBytes.set(keyOf(f.path), (groupBytes.get(keyOf(f.path)) ?? 0) + f.size);
    files = listing
      .filter((f) => /\.gguf$/i.test(f.path))
      .map((f) => {
        const mmproj = isMmproj(f.path);
        return { path: f.path, size: f.size, quant: quantOf(f.path), mmproj, fits: mmproj ? null : fitsInMemory(groupBytes.get(keyOf(f.path)) ?? f.size, memoryBytes) };
      });
  } else {
    const chosen = new Set(selection?.files.map((f) => f.path) ?? listing.map((f) => f.path));
    files = listing.filter((f) => chosen.has(f.path)).map((f) => ({ path: f.path, size: f.size, quant: null, mmproj: false, fits: null }));
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const quants = [...new Set(files.filter((f) => !f.mmproj && f.quant).map((f) => f.quant as string))].sort();
  return {
    repo: c.repo,
    format: effective,
    downloads: c.downloads,
    likes: c.likes,
    gated: c.gated,
    files,
    quants,
    defaultSelection: selection
      ? { quant: selection.quant, files: selection.files.map((f) => f.path), bytes: selection.totalBytes, reason: selection.reason }
      : null,
    fits: selection ? fitsInMemory(selection.totalBytes, memoryBytes) : null,
  };
}

/**
 * Searches the hub for GGUF and MLX model repos matching `query` (a substring of the repo id, as
 * the hub's search does), most downloaded first, and lists each one's files. Repos whose file
 * listing fails (e.g. taken down meanwhile) are left out with a warning.
 */
export async function searchModels(opts: SearchOptions): Promise<SearchResult[]> {
  const hubUrl = (opts.hubUrl ?? hubEndpoint(process.env)).replace(/\/+$/, "");
  const limit = Math.max(1, opts.limit ?? 20);
  const memoryBytes = opts.memoryBytes ?? totalmem();
  const credentials = opts.token ? { accessToken: opts.token } : {};
  const formats: RepoFormat[] = opts.format ? [opts.format] : ["gguf", "mlx"];
  // A hub that stalls mid-answer would otherwise hold the search (and `lmx search`) for minutes.
  const timeoutMs = opts.requestTimeoutMs ?? 30_000;
  const boundedFetch = timeoutFetch(fetch, timeoutMs);

  const byRepo = new Map<string, Candidate>();
  try {
    for (const format of formats) {
      const models = (await hubLib()).listModels({
        hubUrl,
        fetch: boundedFetch,
        search: { query: opts.query, tags: [format] },
        sort: "downloads",
        limit,
        ...credentials,
      });
      for await (const m of models) {
        if (!byRepo.has(m.name)) byRepo.set(m.name, { repo: m.name, downloads: m.downloads, likes: m.likes, gated: m.gated !== false, tagFormat: format });
      }
    }
  } catch (err) {
    throw mapError(err, hubUrl, timeoutMs);
  }
  const candidates = [...byRepo.values()].sort((a, b) => b.downloads - a.downloads || (a.repo < b.repo ? -1 : 1)).slice(0, limit);

  const results = await mapLimit(candidates, LISTING_CONCURRENCY, async (c): Promise<SearchResult | null> => {
    try {
      const listing: RepoFile[] = [];
      for await (const e of (await hubLib()).listFiles({ repo: c.repo, hubUrl, recursive: true, fetch: boundedFetch, ...credentials })) {
        if (e.type === "file") listing.push({ path: e.path, size: e.lfs?.size ?? e.size });
      }
      return describeRepo(c, listing, memoryBytes);
    } catch (err) {
      log.warn("could not list a search result's files; leaving it out", { repo: c.repo, error: errorMessage(err) });
      return null;
    }
  });
  return results.filter((r): r is SearchResult => r !== null);
}

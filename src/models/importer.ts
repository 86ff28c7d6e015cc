import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import type { ModelDescriptor, ModelInfo } from "../engines/types.ts";
import { InvalidRequestError } from "../errors.ts";
import { notRegularFile } from "../gguf/file-kind.ts";
import { log } from "../log.ts";
import type { ModelRegistry } from "./registry.ts";

// Registers models other tools already downloaded, without copying them: LM Studio's model folder,
// Ollama's content-addressed store, and any folder of GGUF files or MLX model folders.

export interface ImportSources {
  lmstudioDir: string;
  ollamaDir: string;
}

export interface ImportRequest {
  paths?: string[];
  lmstudio?: boolean;
  ollama?: boolean;
}

export interface Found {
  id: string;
  format: "gguf" | "mlx";
  path: string;
  source: string;
}

export interface ImportResult {
  imported: { id: string; path: string; source: string }[];
  skipped: { path: string; reason: string }[];
}

const SHARD = /-(\d{5})-of-(\d{5})\.gguf$/i;

function isMlxFolder(dir: string): boolean {
  try {
    const names = readdirSync(dir);
    return names.includes("config.json") && names.some((n) => n.endsWith(".safetensors"));
  } catch {
    return false;
  }
}

type Skipped = ImportResult["skipped"];

/** True for a dangling symlink too, which existsSync calls missing. */
function lstatExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A `.gguf` path that is not a regular file (FIFO, device, dangling symlink…): never open it. */
function skipNonRegular(path: string, skipped: Skipped): boolean {
  const why = notRegularFile(path);
  if (why === undefined) return false;
  log.warn("skipping a .gguf that is not a regular file", { path, reason: why });
  skipped.push({ path, reason: `not a regular file: ${why}` });
  return true;
}

/** GGUF files and MLX folders under `root` (first shard only for split GGUFs). */
export function scanFolder(root: string, source: string, skipped: Skipped = [], depth = 0): Found[] {
  if (depth > 8) return [];
  if (isMlxFolder(root)) return [{ id: basename(root), format: "mlx", path: root, source }];
  let entries;
  try {
    entries = readdirSync(root, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: Found[] = [];
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const full = join(root, e.name);
    if (e.isDirectory()) out.push(...scanFolder(full, source, skipped, depth + 1));
    else if (/\.gguf$/i.test(e.name) && !/mmproj/i.test(e.name)) {
      const shard = SHARD.exec(e.name);
      if (shard && Number(shard[1]) !== 1) continue;
      if (skipNonRegular(full, skipped)) continue;
      out.push({ id: e.name.replace(SHARD, "").replace(/\.gguf$/i, ""), format: "gguf", path: full, source });
    }
  }
  return out;
}

interface OllamaManifest {
  layers?: { mediaType?: string; digest?: string }[];
}

/**
 * Ollama keeps manifests/<registry>/<namespace>/<model>/<tag> (JSON) pointing at
 * blobs/sha256-<hex>; the layer of media type application/vnd.ollama.image.model is the GGUF.
 */
export function scanOllama(dir: string, skipped: Skipped = []): Found[] {
  const manifests = join(dir, "manifests");
  if (!existsSync(manifests)) return [];
  const out: Found[] = [];
  const walk = (d: string, depth: number) => {
    if (depth > 6) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      if (e.isDirectory()) { walk(full, depth + 1); continue; }
      // A manifest is a small regular file; anything else (a FIFO would block the read) is not one.
      if (!e.isFile()) continue;
      let manifest: OllamaManifest;
      try {
        manifest = JSON.parse(readFileSync(full, "utf8")) as OllamaManifest;
      } catch {
        continue;
      }
      const layer = manifest.layers?.find((l) => l.mediaType === "application/vnd.ollama.image.model");
      const digest = layer?.digest?.match(/^sha256:([0-9a-f]{64})$/)?.[1];
      if (!digest) continue;
      const blob = join(dir, "blobs", `sha256-${digest}`);
      if (!existsSync(blob) || skipNonRegular(blob, skipped)) continue;
      // registry/namespace/model/tag → model:tag, keeping the namespace unless it is "library".
      const parts = relative(manifests, full).split(/[\\/]/);
      const [, namespace, model, tag] = parts.length >= 4 ? parts.slice(-4) : [undefined, undefined, parts.at(-2), parts.at(-1)];
      const name = namespace && namespace !== "library" ? `${namespace}/${model}` : model;
      out.push({ id: `${name}:${tag}`, format: "gguf", path: blob, source: "ollama" });
    }
  };
  walk(manifests, 0);
  return out;
}

export class ModelImporter {
  constructor(
    private readonly registry: ModelRegistry,
    private readonly sources: ImportSources,
    private readonly inspect: (d: ModelDescriptor) => Promise<ModelInfo>,
  ) {}

  find(req: ImportRequest): { found: Found[]; skipped: ImportResult["skipped"] } {
    const found: Found[] = [];
    const skipped: ImportResult["skipped"] = [];
    const useDefaults = !req.paths?.length && req.lmstudio === undefined && req.ollama === undefined;
    if (req.lmstudio || useDefaults) found.push(...scanFolder(this.sources.lmstudioDir, "lmstudio", skipped));
    if (req.ollama || useDefaults) found.push(...scanOllama(this.sources.ollamaDir, skipped));
    for (const p of req.paths ?? []) {
      const abs = resolve(p);
      let isDir = false;
      try {
        isDir = statSync(abs).isDirectory();
      } catch {
        if (!lstatExists(abs)) throw new InvalidRequestError(`no such file or folder: ${abs}`, "paths");
      }
      if (isDir) found.push(...scanFolder(abs, "path", skipped));
      else if (!/\.gguf$/i.test(abs)) skipped.push({ path: abs, reason: "not a .gguf file" });
      else if (!skipNonRegular(abs, skipped)) {
        found.push({ id: basename(abs).replace(SHARD, "").replace(/\.gguf$/i, ""), format: "gguf", path: abs, source: "path" });
      }
    }
    return { found, skipped };
  }

  /** Registers what `find` finds; a file already registered is skipped, a clashing id gets a suffix. */
  async run(req: ImportRequest): Promise<ImportResult> {
    const { found, skipped } = this.find(req);
    const imported: ImportResult["imported"] = [];
    const byPath = new Map(this.registry.all().map((m) => [m.path, m.id]));
    for (const f of found) {
      const existing = byPath.get(f.path);
      if (existing) { skipped.push({ path: f.path, reason: `already registered as ${existing}` }); continue; }
      let id = f.id;
      for (let n = 2; this.registry.get(id); n++) id = `${f.id}-${n}`;
      let info: ModelInfo | undefined;
      if (f.format === "gguf") {
        try {
          info = await this.inspect({ id, format: "gguf", path: f.path });
        } catch (err) {
          skipped.push({ path: f.path, reason: `not a readable GGUF: ${(err as Error).message}` });
          continue;
        }
      }
      this.registry.upsert({
        id, format: f.format, path: f.path, origin: "import", sourceRepo: null,
        sizeBytes: info?.sizeBytes ?? 0, architecture: info?.architecture ?? null, quantization: info?.quantization ?? null,
        declaredContext: info?.declaredContextLength ?? null,
      });
      byPath.set(f.path, id);
      imported.push({ id, path: f.path, source: f.source });
    }
    return { imported, skipped };
  }
}

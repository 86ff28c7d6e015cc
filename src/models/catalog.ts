import { existsSync, readdirSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { UsageError } from "../errors.ts";
import { notRegularFile } from "../gguf/file-kind.ts";
import { log } from "../log.ts";
import type { ModelDescriptor } from "../engines/types.ts";

// Split GGUFs are named name-00001-of-00003.gguf; only the first shard is a model entry and
// llama.cpp finds the rest next to it.
const SHARD = /-(\d{5})-of-(\d{5})\.gguf$/i;

export interface CatalogSource {
  modelsDir: string;
  /** `--model` values: PATH.gguf or ID=PATH.gguf. */
  explicit: string[];
  /** Paths by id from config.json's models section. */
  configured: Record<string, string>;
  /** Downloaded and imported models from the registry, and their aliases. */
  registered?: () => ModelDescriptor[];
  aliases?: () => Map<string, string>;
  /** The model a requested name is routed to (routes.ts), for names that are no model's id or alias. */
  route?: (name: string) => string | undefined;
}

function idFromFile(path: string): string {
  return basename(path).replace(SHARD, "").replace(/\.gguf$/i, "");
}

// Paths already warned about, so a rescan on every request does not repeat the warning.
const warned = new Set<string>();

/** A FIFO, device or dangling symlink named *.gguf is never served (opening a FIFO blocks for ever). */
function skipNonRegular(path: string): boolean {
  const why = notRegularFile(path);
  if (why === undefined) return false;
  if (!warned.has(path)) {
    warned.add(path);
    log.warn("skipping a .gguf in the models folder that is not a regular file", { path, reason: why });
  }
  return true;
}

function* walkGguf(dir: string, depth = 0): Generator<string> {
  if (depth > 6) return;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const full = join(dir, e.name);
    if (e.isDirectory()) yield* walkGguf(full, depth + 1);
    else if ((e.isFile() || e.isSymbolicLink()) && /\.gguf$/i.test(e.name)) {
      const shard = SHARD.exec(e.name);
      if (shard && Number(shard[1]) !== 1) continue;
      if (skipNonRegular(full)) continue;
      yield full;
    }
  }
}

/** The servable models: files in the models directory plus those named on the command line or in config. */
export class ModelCatalog {
  private models = new Map<string, ModelDescriptor>();

  constructor(private readonly source: CatalogSource) {
    for (const spec of source.explicit) {
      const path = this.parseSpec(spec).path;
      const why = notRegularFile(path);
      if (why) throw new UsageError(`--model ${spec}: ${path} cannot be a model file: ${why}`);
    }
    this.refresh();
  }

  private parseSpec(spec: string): { id: string; path: string } {
    const eq = spec.indexOf("=");
    // A path may itself contain '='; only treat the prefix as an id when it looks like one.
    if (eq > 0 && !spec.slice(0, eq).includes("/")) {
      return { id: spec.slice(0, eq), path: resolve(spec.slice(eq + 1)) };
    }
    return { id: idFromFile(spec), path: resolve(spec) };
  }

  /** Re-reads the models directory, so files added while serving become servable. */
  refresh(): void {
    const next = new Map<string, ModelDescriptor>();
    const add = (id: string, path: string) => {
      if (!next.has(id)) next.set(id, { id, format: "gguf", path });
    };
    for (const spec of this.source.explicit) {
      const { id, path } = this.parseSpec(spec);
      add(id, path);
    }
    for (const [id, path] of Object.entries(this.source.configured)) add(id, resolve(path));
    for (const d of this.source.registered?.() ?? []) if (!next.has(d.id)) next.set(d.id, d);
    if (existsSync(this.source.modelsDir)) {
      const found = [...walkGguf(this.source.modelsDir)];
      const counts = new Map<string, number>();
      for (const f of found) counts.set(idFromFile(f), (counts.get(idFromFile(f)) ?? 0) + 1);
      for (const f of found) {
        // Two files with the same name in different folders are told apart by their relative path.
        const id = counts.get(idFromFile(f))! > 1 ? relative(this.source.modelsDir, f).replace(/\.gguf$/i, "") : idFromFile(f);
        add(id, f);
      }
    }
    this.models = next;
  }

  list(): ModelDescriptor[] {
    return [...this.models.values()];
  }

  /**
   * The model a request names: a model's id or alias serves as itself, any other name goes
   * through the routes. `routedTo` says where a route pointed when that model does not exist.
   */
  forRequest(name: string): { descriptor?: ModelDescriptor; routedTo?: string } {
    const direct = this.get(name);
    if (direct) return { descriptor: direct };
    const routedTo = this.source.route?.(name);
    if (routedTo === undefined) return {};
    return { descriptor: this.get(routedTo), routedTo };
  }

  get(id: string): ModelDescriptor | undefined {
    const lookup = () => this.models.get(id) ?? this.models.get(this.source.aliases?.().get(id) ?? "");
    let hit = lookup();
    if (!hit) {
      this.refresh();
      hit = lookup();
    }
    return hit;
  }
}

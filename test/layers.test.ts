// The layering rules of docs/architecture.md, checked on the import statements under src/:
// api adapters → inference core and services → engines, with doors that open one way only.
//
// A "unit" is a folder directly under src/ (src/models/, src/api/ …) or a file directly in src/
// (server.ts, errors.ts, log.ts, version.ts). Type-only imports count: they couple folders as much
// as value imports do. Engines may import src/core/ (it defines the request and event types the
// engines produce), src/config/, src/util/ and the shared files (errors, log, version).

import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../src");

/**
 * Edges the rules allow anyway, each with its reason. `from`/`to` name a unit ("inference") or a
 * path prefix under src/ ("engines/mlx/"). Delete an entry once its edge is gone (a test says so).
 */
const EXCEPTIONS: { from: string; to: string; reason: string }[] = [];

/** What engines must never import: each other (checked separately) and everything above them. */
const ABOVE_ENGINES = ["api", "cli", "update", "service", "release", "admin", "downloads", "runtimes", "scheduler", "models", "probe", "server.ts"];

interface Import { file: string; from: string; to: string; target: string }

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.tsx?$/.test(name) ? [path] : [];
  });
}

/** `models` for src/models/registry.ts, `server.ts` for src/server.ts. */
function unitOf(path: string): string {
  const parts = relative(SRC, path).split("/");
  return parts[0]!;
}

const SPECIFIER = /\b(?:import|export)\s[^;"'`]*?\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)|^\s*import\s+["']([^"']+)["']/gm;

export function importsOf(file: string, text: string): Import[] {
  const out: Import[] = [];
  for (const m of text.matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    if (!spec.startsWith(".")) continue;
    const target = resolve(dirname(file), spec);
    if (relative(SRC, target).startsWith("..")) continue;
    out.push({ file: relative(SRC, file), from: unitOf(file), to: unitOf(target), target: relative(SRC, target) });
  }
  return out;
}

function allImports(): Import[] {
  return sourceFiles(SRC).flatMap((f) => importsOf(f, readFileSync(f, "utf8")));
}

const matches = (pattern: string, unit: string, path: string) => (pattern.includes("/") ? path.startsWith(pattern) : pattern === unit);
const excepted = (i: Import) => EXCEPTIONS.some((x) => matches(x.from, i.from, i.file) && matches(x.to, i.to, i.target));

/** Strongly connected components of more than one unit (Tarjan), i.e. the import cycles between units. */
export function cycles(edges: Map<string, Set<string>>): string[][] {
  let index = 0;
  const stack: string[] = [];
  const info = new Map<string, { index: number; low: number; onStack: boolean }>();
  const out: string[][] = [];
  const visit = (v: string) => {
    const me = { index, low: index, onStack: true };
    index++;
    info.set(v, me);
    stack.push(v);
    for (const w of edges.get(v) ?? []) {
      const seen = info.get(w);
      if (!seen) {
        visit(w);
        me.low = Math.min(me.low, info.get(w)!.low);
      } else if (seen.onStack) {
        me.low = Math.min(me.low, seen.index);
      }
    }
    if (me.low === me.index) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        info.get(w)!.onStack = false;
        component.push(w);
      } while (w !== v);
      if (component.length > 1) out.push(component.sort());
    }
  };
  for (const v of edges.keys()) if (!info.has(v)) visit(v);
  return out;
}

describe("layers", () => {
  const imports = allImports();

  test("the import scanner sees static, type-only, re-exported and dynamic imports", () => {
    const file = join(SRC, "models/x.ts");
    const found = importsOf(file, [
      'import { a } from "../api/app.ts";',
      'import type {\n  B,\n} from "../scheduler/scheduler.ts";',
      'export { c } from "./registry.ts";',
      'const d = await import("../engines/llama/engine.ts");',
      'import "../log.ts";',
      'import { e } from "node:fs";',
    ].join("\n")).map((i) => i.to);
    expect(found).toEqual(["api", "scheduler", "models", "engines", "log.ts"]);
    expect(imports.length).toBeGreaterThan(100);
  });

  test("the cycle finder finds cycles of any length", () => {
    const g = new Map([["a", new Set(["b"])], ["b", new Set(["c"])], ["c", new Set(["a"])], ["d", new Set(["a"])]]);
    expect(cycles(g)).toEqual([["a", "b", "c"]]);
    expect(cycles(new Map([["a", new Set(["b"])], ["b", new Set<string>()]]))).toEqual([]);
  });

  test("engines import neither each other nor anything above them", () => {
    // engines/llama/x.ts belongs to "llama"; engines/types.ts is the interface all of them share.
    const engineOf = (path: string) => { const parts = path.split("/"); return parts.length > 2 ? parts[1] : undefined; };
    const bad = imports.filter((i) => {
      if (i.from !== "engines" || excepted(i)) return false;
      const target = i.to === "engines" ? engineOf(i.target) : undefined;
      return (target !== undefined && target !== engineOf(i.file)) || ABOVE_ENGINES.includes(i.to);
    });
    expect(bad.map((i) => `${i.file} imports ${i.target}`)).toEqual([]);
  });

  test("the core imports nothing but the shared errors and logger (and the seeded PRNG)", () => {
    // Engines produce the core's events and adapters consume them, so the core sits below both.
    // util/random.ts is a pure function with no imports: seeded choices (n) derive their seeds with it.
    const bad = imports.filter((i) => i.from === "core" && i.to !== "core" && i.to !== "errors.ts" && i.to !== "log.ts" && !i.target.endsWith("util/random.ts") && !excepted(i));
    expect(bad.map((i) => `${i.file} imports ${i.target}`)).toEqual([]);
  });

  test("engines reach the core only for its request and event types, never its service", () => {
    const bad = imports.filter((i) => i.from === "engines" && i.target.startsWith("core/service") && !excepted(i));
    expect(bad.map((i) => `${i.file} imports ${i.target}`)).toEqual([]);
  });

  test("only the server (and the CLI above it) import the api layer; nothing below them does", () => {
    // The CLI sits above the server (its commands are HTTP clients) and shares the api's wire schemas.
    const bad = imports.filter((i) => i.to === "api" && i.from !== "api" && i.from !== "server.ts" && i.from !== "cli" && !excepted(i));
    expect(bad.map((i) => `${i.file} imports ${i.target}`)).toEqual([]);
  });

  test("no import cycle between folders", () => {
    const edges = new Map<string, Set<string>>();
    for (const i of imports) {
      if (i.from === i.to || excepted(i)) continue;
      if (!edges.has(i.from)) edges.set(i.from, new Set());
      edges.get(i.from)!.add(i.to);
    }
    const found = cycles(edges).map((units) => {
      const inCycle = imports.filter((i) => i.from !== i.to && units.includes(i.from) && units.includes(i.to) && !excepted(i));
      return `${units.join(" ↔ ")}: ${inCycle.map((i) => `${i.file} → ${i.target}`).join(", ")}`;
    });
    expect(found).toEqual([]);
  });

  test("every exception still names an edge that exists", () => {
    const stale = EXCEPTIONS.filter((x) => !imports.some((i) => matches(x.from, i.from, i.file) && matches(x.to, i.to, i.target)));
    expect(stale).toEqual([]);
  });
});

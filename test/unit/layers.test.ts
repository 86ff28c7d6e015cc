// The one-way doors around the inference core, checked on the import statements themselves.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(import.meta.dir, "../..");

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts")).map((f) => join(dir, f));
}

/** Repository-relative paths of the modules a file imports (relative imports only). */
function imports(file: string): string[] {
  const text = readFileSync(join(root, file), "utf8");
  return [...text.matchAll(/(?:import|export)[^"']*?from\s+["'](\.[^"']+)["']/g)].map((m) => relative(root, resolve(root, dirname(file), m[1]!)));
}

describe("layers", () => {
  test("the core imports nothing above or beside it: no api, cli, scheduler or engine", () => {
    const bad = sources("src/core").flatMap((f) => imports(f).filter((i) => !i.startsWith("src/core/") && i !== "src/errors.ts" && i !== "src/log.ts").map((i) => `${f} → ${i}`));
    expect(bad).toEqual([]);
  });

  test("engines never import each other, the core's service, or the api, cli and scheduler", () => {
    const engines = ["llama", "mlx"];
    const bad = engines.flatMap((name) => sources(`src/engines/${name}`).flatMap((f) => imports(f).filter((i) =>
      engines.some((other) => other !== name && i.startsWith(`src/engines/${other}/`))
      || i === "src/core/service.ts" || /^src\/(api|cli|scheduler|inference)\//.test(i)).map((i) => `${f} → ${i}`)));
    expect(bad).toEqual([]);
  });
});

// What `lmx serve` imports before it answers: libraries only pulls and searches use are imported
// when first needed (src/hub/hub-lib.ts), so they cost no start-up time (docs/performance.md,
// "Engine settings").
import { expect, test } from "bun:test";
import { join } from "node:path";

const LAZY = ["@huggingface/hub"];

test("the serve command's module graph leaves out @huggingface/hub", () => {
  const serve = join(import.meta.dir, "../../src/cli/commands/serve.ts");
  const script = `await import(${JSON.stringify(serve)}); console.log(JSON.stringify(Object.keys(require.cache)));`;
  const child = Bun.spawnSync([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  expect(child.exitCode).toBe(0);
  const loaded = JSON.parse(child.stdout.toString()) as string[];
  // The graph really was walked: Elysia (the HTTP layer) is in it.
  expect(loaded.some((m) => m.includes("/node_modules/elysia/"))).toBe(true);
  for (const name of LAZY) expect(loaded.filter((m) => m.includes(`/node_modules/${name}/`))).toEqual([]);
});

// `npm test`: the synthetic fixtures, then `bun test` in two passes so that training the two
// trained models (minutes, once per cache) overlaps the tests that do not use them.
//
// The trainers run at idle priority (SCHED_IDLE through `chrt`, else nice 19): they take only the
// CPU time the tests leave unused, so the tests' timing hardly changes. The test files whose
// imports reach a trained model's module run in the second pass, once the models are built. A
// file the import scan misses would still be correct, only slower: its `ensure…Model()` waits for
// the build's lock.
//
// `npm test -- ARGS…` passes ARGS to a single `bun test` after building everything first.

import { spawn } from "node:child_process";
import { createWriteStream, existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { FIXTURE_DIR, REPO_ROOT, prepareFixtures } from "./fixtures/prepare.ts";

const TEST_DIR = join(REPO_ROOT, "test");
const TRAINED_MODULES = ["fixtures/agent-model.ts", "fixtures/copy-model.ts"].map((f) => join(TEST_DIR, f));
const BUN_TEST_ARGS = ["test", "--timeout", "120000"];
const TRAIN_LOG = join(FIXTURE_DIR, "train.log");

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === "node_modules" ? [] : testFiles(path);
    return e.name.endsWith(".test.ts") ? [path] : [];
  });
}

const transpiler = new Bun.Transpiler({ loader: "ts" });
const reaches = new Map<string, boolean>();

/** Whether `file`'s relative imports (static or dynamic) lead to a trained model's module. */
function reachesTrained(file: string, seen = new Set<string>()): boolean {
  const known = reaches.get(file);
  if (known !== undefined) return known;
  if (TRAINED_MODULES.includes(file)) return true;
  // Only scripts have imports to follow (a test may import a .py or .json file as text).
  if (seen.has(file) || !/\.[cm]?[jt]sx?$/.test(file) || !existsSync(file)) return false;
  seen.add(file);
  const found = transpiler
    .scanImports(readFileSync(file, "utf8"))
    .filter((i) => i.path.startsWith("."))
    .some((i) => reachesTrained(resolve(dirname(file), i.path), seen));
  reaches.set(file, found);
  return found;
}

function run(cmd: string[], opts: { log?: string } = {}): { done: Promise<number>; kill: () => void } {
  const out = opts.log ? createWriteStream(opts.log) : undefined;
  const child = spawn(cmd[0]!, cmd.slice(1), { cwd: REPO_ROOT, stdio: ["ignore", out ? "pipe" : "inherit", out ? "pipe" : "inherit"] });
  if (out) {
    child.stdout?.pipe(out, { end: false });
    child.stderr?.pipe(out, { end: false });
  }
  const done = new Promise<number>((res) => {
    child.on("error", (err) => {
      out?.write(`${err.message}\n`);
      res(1);
    });
    child.on("close", (code, signal) => {
      out?.end();
      res(code ?? (signal ? 128 : 1));
    });
  });
  return { done, kill: () => child.kill("SIGTERM") };
}

/** The command prefix that runs a process at the lowest CPU priority this system offers. */
function idlePriority(): string[] {
  if (process.platform === "linux" && Bun.which("chrt")) return ["chrt", "--idle", "0"];
  if (Bun.which("nice")) return ["nice", "-n", "19"];
  return [];
}

for (const r of prepareFixtures()) {
  const size = `${(r.bytes / 1e6).toFixed(1)} MB`;
  console.log(r.built ? `built ${r.path} (${size}) in ${Math.round(r.ms)} ms` : `up to date: ${r.path} (${size})`);
}

const bun = process.execPath;
const passThrough = process.argv.slice(2);
const trainCmd = [bun, "run", join(TEST_DIR, "fixtures", "trained-models.ts")];
let exitCode = 0;

if (passThrough.length > 0) {
  exitCode = (await run(trainCmd).done) || (await run([bun, ...BUN_TEST_ARGS, ...passThrough]).done);
} else {
  const files = testFiles(TEST_DIR).sort();
  const later = files.filter((f) => reachesTrained(f));
  const first = files.filter((f) => !later.includes(f));
  const started = performance.now();
  console.log(`building the trained models at idle priority beside the tests (log: ${relative(REPO_ROOT, TRAIN_LOG)})`);
  const trainer = run([...idlePriority(), ...trainCmd], { log: TRAIN_LOG });
  process.on("SIGINT", () => {
    trainer.kill();
    process.exit(130);
  });
  console.log(`bun test: ${first.length} files that use no trained model`);
  const firstCode = await run([bun, ...BUN_TEST_ARGS, ...first.map((f) => `./${relative(REPO_ROOT, f)}`)]).done;
  console.log("waiting for the trained models…");
  const trainCode = await trainer.done;
  const log = readFileSync(TRAIN_LOG, "utf8").trimEnd().split("\n");
  if (trainCode !== 0) {
    console.error(`building the trained models failed (exit ${trainCode}); the end of ${relative(REPO_ROOT, TRAIN_LOG)}:\n${log.slice(-60).join("\n")}`);
    process.exit(1);
  }
  // What was trained, how long it took and how closely llama.cpp reproduces the trainer.
  const summary = log.filter((l) => /^(copy|agent) model: |ready in |^wrote |llama\.cpp vs the trainer/.test(l));
  console.log(`${summary.join("\n")}\n(trained models ready ${Math.round((performance.now() - started) / 1000)} s after the tests started)`);
  console.log(`bun test: ${later.length} files that use a trained model`);
  const laterCode = await run([bun, ...BUN_TEST_ARGS, ...later.map((f) => `./${relative(REPO_ROOT, f)}`)]).done;
  exitCode = firstCode || laterCode;
}
process.exit(exitCode);

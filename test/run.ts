// `npm test`: the synthetic fixtures, then `bun test` in passes so that training the two trained
// models (minutes, once per cache) overlaps the tests that do not use them.
//
// The trainers run at idle priority (SCHED_IDLE through `chrt`, else nice 19): they take only the
// CPU time the tests leave unused, so the tests' timing hardly changes. The test files whose
// imports reach a trained model's module run once the models they reach are built, the agent
// model's group as soon as it is ready, while the copy model still trains; at the end of the first
// pass the trainers are raised to normal priority (Linux, where permitted), so the one still
// training does not wait behind those tests. A file the import scan misses would still be
// correct, only slower: its `ensure…Model()` waits for the build's lock.
//
// `npm test -- ARGS…` passes ARGS to a single `bun test` after building everything first.

import { spawn } from "node:child_process";
import { createWriteStream, existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { FIXTURE_DIR, REPO_ROOT, prepareFixtures } from "./fixtures/prepare.ts";

const TEST_DIR = join(REPO_ROOT, "test");
/** The trained models, in the order their test groups run when both are ready. */
const TRAINED = [
  { name: "agent", module: join(TEST_DIR, "fixtures", "agent-model.ts") },
  { name: "copy", module: join(TEST_DIR, "fixtures", "copy-model.ts") },
] as const;
type Trained = (typeof TRAINED)[number]["name"];
const BUN_TEST_ARGS = ["test", "--timeout", "120000"];

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === "node_modules" ? [] : testFiles(path);
    return e.name.endsWith(".test.ts") ? [path] : [];
  });
}

const transpiler = new Bun.Transpiler({ loader: "ts" });
const reached = new Map<string, ReadonlySet<Trained>>();

/** The trained models whose modules `file`'s relative imports (static or dynamic) lead to. */
function trainedReached(file: string, seen = new Set<string>()): ReadonlySet<Trained> {
  const known = reached.get(file);
  if (known) return known;
  const own = TRAINED.find((t) => t.module === file);
  if (own) return new Set([own.name]);
  // Only scripts have imports to follow (a test may import a .py or .json file as text).
  if (seen.has(file) || !/\.[cm]?[jt]sx?$/.test(file) || !existsSync(file)) return new Set();
  seen.add(file);
  const found = new Set<Trained>();
  for (const i of transpiler.scanImports(readFileSync(file, "utf8"))) {
    if (i.path.startsWith(".")) for (const t of trainedReached(resolve(dirname(file), i.path), seen)) found.add(t);
  }
  reached.set(file, found);
  return found;
}

function run(cmd: string[], opts: { log?: string } = {}): { done: Promise<number>; kill: () => void; pid?: number } {
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
  return { done, kill: () => child.kill("SIGTERM"), pid: child.pid };
}

/**
 * The failures `bun test` reported, each with the lines it printed for it (the error, the
 * source excerpt, the stack), in the order they happened, across every pass of this run.
 */
const failures: string[] = [];
const MAX_FAILURE_LINES = 80;

/**
 * `bun test ARGS…`, its output passed through as it comes and scanned for failures: a CI log
 * is often read from its end, and with several passes a failure early in the first one would
 * otherwise sit far above the last pass's all-green summary.
 */
function runTests(args: string[]): Promise<number> {
  const child = spawn(bun, [...BUN_TEST_ARGS, ...args], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const watch = (stream: NodeJS.ReadableStream, sink: NodeJS.WriteStream) => {
    let partial = "";
    let file = "";
    let block: string[] = [];
    stream.on("data", (chunk: Buffer) => {
      sink.write(chunk);
      const lines = (partial + chunk.toString("utf8")).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        if (/^\S.*\.test\.[cm]?[jt]sx?:$/.test(line)) {
          file = line;
          block = [];
        } else if (/^\((pass|skip|todo)\) /.test(line)) {
          block = [];
        } else if (/^\(fail\) /.test(line)) {
          const detail = block.length > MAX_FAILURE_LINES ? ["…", ...block.slice(-MAX_FAILURE_LINES)] : block;
          failures.push([...(file ? [file] : []), ...detail, line].join("\n"));
          block = [];
        } else {
          block.push(line);
        }
      }
    });
  };
  watch(child.stdout!, process.stdout);
  watch(child.stderr!, process.stderr);
  return new Promise<number>((res) => {
    child.on("error", (err) => {
      console.error(err.message);
      res(1);
    });
    child.on("close", (code, signal) => res(code ?? (signal ? 128 : 1)));
  });
}

/** The command prefix that runs a process at the lowest CPU priority this system offers. */
function idlePriority(): string[] {
  if (process.platform === "linux" && Bun.which("chrt")) return ["chrt", "--idle", "0"];
  if (Bun.which("nice")) return ["nice", "-n", "19"];
  return [];
}

/** `root` and every process below it (Linux: from /proc; elsewhere only `root`). */
function processTree(root: number): number[] {
  if (process.platform !== "linux") return [root];
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // The command name is in parentheses and may hold spaces: the parent pid follows the last ")".
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // It exited while we looked.
    }
  }
  const out: number[] = [];
  for (const queue = [root]; queue.length > 0; ) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/**
 * Back to normal scheduling for `pid`'s whole tree, every thread: once the tests that need no
 * trained model are done, a trainer at idle priority would only wait behind the ones that do.
 * Best effort: leaving SCHED_IDLE needs root (or a permissive RLIMIT_NICE); without it the
 * trainer stays idle and is only slower.
 */
function normalPriority(pid: number | undefined): void {
  if (pid === undefined || process.platform !== "linux" || !Bun.which("chrt")) return;
  for (const p of processTree(pid)) Bun.spawnSync(["chrt", "--all-tasks", "--other", "--pid", "0", String(p)], { stdout: "ignore", stderr: "ignore" });
}

for (const r of prepareFixtures()) {
  const size = `${(r.bytes / 1e6).toFixed(1)} MB`;
  console.log(r.built ? `built ${r.path} (${size}) in ${Math.round(r.ms)} ms` : `up to date: ${r.path} (${size})`);
}

const bun = process.execPath;
const passThrough = process.argv.slice(2);
let exitCode = 0;

if (passThrough.length > 0) {
  const trainCmd = [bun, "run", join(TEST_DIR, "fixtures", "trained-models.ts")];
  exitCode = (await run(trainCmd).done) || (await runTests(passThrough));
} else {
  const files = testFiles(TEST_DIR).sort();
  const first = files.filter((f) => trainedReached(f).size === 0);
  // A file reaching both models goes with the copy model, the later of the two in TRAINED.
  const groups = TRAINED.map((t, i) => ({
    ...t,
    files: files.filter((f) => trainedReached(f).has(t.name) && !TRAINED.slice(i + 1).some((later) => trainedReached(f).has(later.name))),
  }));
  const started = performance.now();
  const logs = new Map(TRAINED.map((t) => [t.name, join(FIXTURE_DIR, `train-${t.name}.log`)]));
  console.log(`building the trained models at idle priority beside the tests (logs: ${[...logs.values()].map((l) => relative(REPO_ROOT, l)).join(", ")})`);
  const trainers = new Map(
    TRAINED.map((t) => {
      const trainer = run([...idlePriority(), bun, "run", t.module], { log: logs.get(t.name) });
      // Told as soon as it is known; the tests that need the model learn of a failure when they would start.
      const ready = trainer.done.then((code) => {
        const log = readFileSync(logs.get(t.name)!, "utf8").trimEnd().split("\n");
        if (code !== 0) {
          console.error(`building the ${t.name} model failed (exit ${code}); the end of ${relative(REPO_ROOT, logs.get(t.name)!)}:\n${log.slice(-60).join("\n")}`);
          return false;
        }
        // What was trained, how long it took and how closely llama.cpp reproduces the trainer.
        const summary = log.filter((l) => /ready in |^wrote |llama\.cpp vs the trainer/.test(l));
        console.log(`${summary.join("\n")}\n(${t.name} model ready ${Math.round((performance.now() - started) / 1000)} s after the tests started)`);
        return true;
      });
      return [t.name, { ...trainer, ready }] as const;
    }),
  );
  process.on("SIGINT", () => {
    for (const t of trainers.values()) t.kill();
    process.exit(130);
  });
  console.log(`bun test: ${first.length} files that use no trained model`);
  exitCode = await runTests(first.map((f) => `./${relative(REPO_ROOT, f)}`));
  for (const t of trainers.values()) normalPriority(t.pid);
  // Each group once the models it reaches are built, in the order they become ready.
  const pending = groups.filter((g) => g.files.length > 0).map((g) => {
    const needs = [...new Set(g.files.flatMap((f) => [...trainedReached(f)]))];
    return { ...g, ready: Promise.all(needs.map((n) => trainers.get(n)!.ready)).then((built) => ({ group: g, built: built.every(Boolean) })) };
  });
  while (pending.length > 0) {
    console.log(`waiting for the ${pending.map((g) => g.name).join(" or the ")} model…`);
    const { group, built } = await Promise.race(pending.map((g) => g.ready));
    pending.splice(pending.findIndex((g) => g.name === group.name), 1);
    if (!built) {
      console.error(`not run: ${group.files.length} files that use the ${group.name} model, which could not be built`);
      exitCode = 1;
      continue;
    }
    console.log(`bun test: ${group.files.length} files that use the ${group.name} model`);
    exitCode = (await runTests(group.files.map((f) => `./${relative(REPO_ROOT, f)}`))) || exitCode;
  }
  if (!(await Promise.all([...trainers.values()].map((t) => t.ready))).every(Boolean)) exitCode = 1;
}
if (failures.length > 0) {
  console.error(`\n== ${failures.length} failed test${failures.length === 1 ? "" : "s"} in this run, again here so the end of the log shows them:\n`);
  console.error(failures.join("\n\n"));
} else if (exitCode !== 0) {
  console.error(`\n== exit ${exitCode} with no failed test reported: see above for a file that did not load, a trainer's log or a crash`);
}
process.exit(exitCode);

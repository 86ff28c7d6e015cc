// Start-up to ready, this tree against another checkout of LMX (for example the commit before a
// start-up change), alternating the two (ABBA) so machine noise hits both:
//
//   bun bench/experiments/ready-ab.ts OTHER_CHECKOUT [REPS=10] [MODEL.gguf]
//
// Each start is `lmx serve` from source with a fresh LMX_HOME (as `bun run bench` starts it, with
// MODEL registered when given), timed from spawn to the first 200 from GET /health (the bench's
// "start-up to ready"). Also the CPU time the server process had used at that moment (utime + stime
// from /proc/PID/stat, 10 ms ticks), which time spent descheduled on a busy machine does not inflate.

import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort } from "../servers.ts";

const [other, repsArg, modelArg] = process.argv.slice(2);
const model = modelArg ? resolve(modelArg) : undefined;
if (!other) throw new Error("usage: bun bench/experiments/ready-ab.ts OTHER_CHECKOUT [REPS] [MODEL.gguf]");
const reps = Number(repsArg ?? 10);
const trees = { this: resolve(import.meta.dir, "../.."), other: resolve(other) };

const cpuMs = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
};

async function start(tree: string): Promise<{ wallMs: number; cpuMs: number }> {
  const port = await freePort();
  const home = join(tmpdir(), `lmx-ready-${process.pid}-${port}`);
  rmSync(home, { recursive: true, force: true });
  mkdirSync(home, { recursive: true });
  const argv = [process.execPath, join(tree, "src/cli/main.ts"), "serve", "--host", "127.0.0.1", "--port", String(port), "--log-level", "warn", ...(model ? ["--model", `m=${model}`] : [])];
  const at = performance.now();
  const proc = Bun.spawn(argv, { cwd: tree, env: { ...process.env, LMX_HOME: home }, stdout: "ignore", stderr: "ignore" });
  try {
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status === 200, () => false);
      if (ok) return { wallMs: performance.now() - at, cpuMs: cpuMs(proc.pid) };
      if (proc.exitCode !== null) throw new Error(`${tree}: the server exited with ${proc.exitCode}`);
      if (performance.now() - at > 30_000) throw new Error(`${tree}: not ready after 30 s`);
      await Bun.sleep(2);
    }
  } finally {
    proc.kill();
    await proc.exited;
    rmSync(home, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const results = { this: [] as { wallMs: number; cpuMs: number }[], other: [] as { wallMs: number; cpuMs: number }[] };
// One untimed start each: the file cache.
for (const t of ["this", "other"] as const) await start(trees[t]);
for (let rep = 0; rep < reps; rep++) {
  for (const t of rep % 2 === 0 ? (["this", "other"] as const) : (["other", "this"] as const)) results[t].push(await start(trees[t]));
}
console.log(`load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}; ${reps} starts each (ABBA)`);
for (const t of ["this", "other"] as const) {
  const r = results[t];
  const wall = r.map((x) => x.wallMs);
  const cpu = r.map((x) => x.cpuMs);
  console.log(`${t.padEnd(5)} ${trees[t]}: ready ${median(wall).toFixed(0)} ms (${Math.min(...wall).toFixed(0)}–${Math.max(...wall).toFixed(0)}), CPU at ready ${median(cpu).toFixed(0)} ms (${Math.min(...cpu)}–${Math.max(...cpu)})`);
}

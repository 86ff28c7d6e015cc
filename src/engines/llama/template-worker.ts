// Renders one chat template per message, inside a worker thread that template-guard.ts can
// terminate. A chat template is code from a model file: here it may loop, recurse and allocate,
// but only within the caps each job carries, and a job that ignores them (a single allocation,
// a tight loop in native code) is ended from outside by the wall-clock and memory watch.
//
// Protocol: the job arrives with its own MessagePort and a one-int SharedArrayBuffer. The answer
// goes to the port, then the int becomes 1 and is notified, so the caller may either await the
// port or block on the int (Atomics.wait) for a synchronous render.

import { Environment, Interpreter, Template } from "@huggingface/jinja";
import { type MessagePort, parentPort } from "node:worker_threads";

export interface RenderLimits {
  /** Interpreter evaluations per render (bounds loops and macro calls together). */
  maxSteps: number;
  /** Nested evaluations (bounds recursion). */
  maxDepth: number;
  /** Length of any string value, the output included. */
  maxStringChars: number;
  /** Elements one range() call may produce. */
  maxRange: number;
}

export interface RenderJob {
  port: MessagePort;
  flag: Int32Array;
  template: string;
  /** The render variables as JSON: what node-llama-cpp passes is plain data. */
  itemsJson: string;
  limits: RenderLimits;
}

export type RenderOutcome =
  | { ok: true; output: string }
  /**
   * `limit`: which cap the template broke; absent for an ordinary template error (raise_exception,
   * a syntax error). `broken`: the renderer itself failed, which says nothing about the template.
   */
  | { ok: false; message: string; limit?: "steps" | "depth" | "size" | "range" | "time" | "memory"; broken?: true };

class LimitError extends Error {
  constructor(readonly limit: "steps" | "depth" | "size" | "range", message: string) {
    super(message);
  }
}

let limits: RenderLimits = { maxSteps: 0, maxDepth: 0, maxStringChars: 0, maxRange: 0 };
let steps = 0;
let depth = 0;

function checkSize(chars: number): void {
  if (chars > limits.maxStringChars) {
    throw new LimitError("size", `a string grew past ${limits.maxStringChars} characters`);
  }
}

// The interpreter has no hooks, so its one dispatch method is wrapped: every statement and
// expression passes through it, which makes it the place to count work, depth and string size.
// This isolate renders nothing but untrusted templates, so patching its globals is contained.
const evaluate = Interpreter.prototype.evaluate;
Interpreter.prototype.evaluate = function guardedEvaluate(this: Interpreter, ...args: Parameters<Interpreter["evaluate"]>) {
  if (++steps > limits.maxSteps) throw new LimitError("steps", `the template ran more than ${limits.maxSteps} steps`);
  if (++depth > limits.maxDepth) throw new LimitError("depth", `the template nested deeper than ${limits.maxDepth} levels`);
  try {
    const value = evaluate.apply(this, args);
    const inner = (value as { value?: unknown }).value;
    if (typeof inner === "string") checkSize(inner.length);
    else if (Array.isArray(inner)) checkSize(inner.length);
    return value;
  } finally {
    depth--;
  }
};

// An empty loop body evaluates nothing, so blocks are counted too: nested loops still run out of steps.
const blocks = Interpreter.prototype as unknown as { evaluateBlock: (...args: unknown[]) => unknown };
const evaluateBlock = blocks.evaluateBlock;
blocks.evaluateBlock = function countedBlock(this: Interpreter, ...args: unknown[]) {
  if (++steps > limits.maxSteps) throw new LimitError("steps", `the template ran more than ${limits.maxSteps} steps`);
  return evaluateBlock.apply(this, args);
};

// Filters such as indent, center and tojson(indent=…) allocate in one native call, before the
// result reaches evaluate: the size cap has to apply inside these.
for (const name of ["repeat", "padStart", "padEnd"] as const) {
  const original = String.prototype[name] as (this: string, ...args: unknown[]) => string;
  Object.defineProperty(String.prototype, name, {
    value: function capped(this: string, ...args: unknown[]): string {
      const count = Number(args[0]);
      const projected = name === "repeat" ? this.length * count : count;
      if (Number.isFinite(projected)) checkSize(projected);
      return original.apply(this, args);
    },
    writable: true,
    configurable: true,
  });
}

function cappedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (step === 0) throw new Error("range() step must not be zero");
  const count = Math.max(0, Math.ceil((stop - start) / step));
  if (!Number.isFinite(count) || count > limits.maxRange) {
    throw new LimitError("range", `range() of ${count} elements is over the limit of ${limits.maxRange}`);
  }
  const out = new Array<number>(count);
  for (let i = 0; i < count; i++) out[i] = start + i * step;
  return out;
}

// The built-in range() materialises its whole result first (range(10**9) is gigabytes before any
// step is counted); every JS function named range that an environment is given becomes the capped one.
const setVariable = Environment.prototype.set;
Environment.prototype.set = function cappedSet(this: Environment, name: string, value: unknown) {
  return setVariable.call(this, name, name === "range" && typeof value === "function" ? cappedRange : value);
};

const parsed = new Map<string, Template | Error>();

function templateFor(source: string): Template {
  let hit = parsed.get(source);
  if (hit === undefined) {
    try {
      hit = new Template(source);
    } catch (err) {
      hit = err instanceof Error ? err : new Error(String(err));
    }
    if (parsed.size >= 8) parsed.delete(parsed.keys().next().value as string);
    parsed.set(source, hit);
  }
  if (hit instanceof Error) throw hit;
  return hit;
}

export function render(job: Pick<RenderJob, "template" | "itemsJson" | "limits">): RenderOutcome {
  limits = job.limits;
  steps = 0;
  depth = 0;
  try {
    const items = JSON.parse(job.itemsJson) as Record<string, unknown>;
    const output = templateFor(job.template).render(items);
    checkSize(output.length);
    return { ok: true, output };
  } catch (err) {
    if (err instanceof LimitError) return { ok: false, limit: err.limit, message: err.message };
    if (err instanceof RangeError && /call stack|stack size/i.test(err.message)) {
      return { ok: false, limit: "depth", message: "the template recursed too deeply" };
    }
    if (err instanceof RangeError && /string length|out of memory/i.test(err.message)) {
      return { ok: false, limit: "size", message: "the template built a string larger than memory allows" };
    }
    return { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
}

parentPort?.on("message", (job: RenderJob) => {
  const outcome = render(job);
  job.port.postMessage(outcome);
  job.port.close();
  Atomics.store(job.flag, 0, 1);
  Atomics.notify(job.flag, 0);
});

// The one lifecycle state machine and its two tables: a model in the scheduler, an MLX worker in
// its supervisor. Every allowed move is taken and every other one refused.

import { describe, expect, test } from "bun:test";
import { WORKER_TRANSITIONS, type WorkerState, workerLifecycle } from "../src/engines/mlx/worker-lifecycle.ts";
import { MODEL_TRANSITIONS, modelLifecycle, type ModelState } from "../src/scheduler/lifecycle.ts";
import { InvalidTransitionError, StateMachine, type TransitionEvent, type TransitionTable } from "../src/util/state-machine.ts";

/** Every (from, to) pair of the table's states, split by whether the table allows it. */
function pairs<S extends string>(table: TransitionTable<S>) {
  const states = Object.keys(table) as S[];
  const all = states.flatMap((from) => states.map((to) => [from, to] as const));
  return { allowed: all.filter(([f, t]) => table[f].includes(t)), refused: all.filter(([f, t]) => !table[f].includes(t)) };
}

/** A machine put into `from` by a path of allowed moves (breadth-first from the initial state). */
function machineIn<S extends string>(table: TransitionTable<S>, initial: S, from: S): StateMachine<S> {
  const path = new Map<S, S[]>([[initial, []]]);
  const queue = [initial];
  while (queue.length) {
    const s = queue.shift()!;
    for (const next of table[s]) if (!path.has(next)) { path.set(next, [...path.get(s)!, next]); queue.push(next); }
  }
  const steps = path.get(from);
  if (!steps) throw new Error(`${from} is unreachable from ${initial}`);
  const m = new StateMachine("test", table, initial);
  for (const s of steps) m.transition(s);
  return m;
}

describe("state machine", () => {
  test("refuses a move the table does not list, changing nothing; logs the moves it makes", () => {
    let t = 1000;
    const seen: TransitionEvent<"a" | "b" | "c">[] = [];
    const m = new StateMachine("thing", { a: ["b"], b: ["c", "a"], c: [] }, "a", { now: () => t, onChange: (e) => seen.push(e), historySize: 2 });
    expect(m.since).toBe(1000);
    const err = (() => { try { m.transition("c"); } catch (e) { return e; } })();
    expect(err).toBeInstanceOf(InvalidTransitionError);
    expect((err as Error).message).toBe("thing cannot go from a to c");
    expect(m.state).toBe("a");
    t = 2000;
    m.transition("b", "because");
    m.transition("a");
    m.transition("b");
    expect(m.state).toBe("b");
    expect(m.since).toBe(2000);
    expect(seen.map((e) => `${e.from}>${e.to}`)).toEqual(["a>b", "b>a", "a>b"]);
    expect(seen[0]).toEqual({ from: "a", to: "b", reason: "because", at: 2000 });
    expect(m.history.map((e) => `${e.from}>${e.to}`)).toEqual(["b>a", "a>b"]);
    expect(m.can("c")).toBe(true);
    expect(m.is("a", "b")).toBe(true);
  });

  for (const [name, table, initial, make] of [
    ["model", MODEL_TRANSITIONS, "unloaded", () => modelLifecycle("m")],
    ["mlx worker", WORKER_TRANSITIONS, "stopped", () => workerLifecycle("m")],
  ] as const) {
    test(`${name} lifecycle: starts ${initial}; every state reachable; every listed move taken, every other refused`, () => {
      expect((make() as StateMachine<string>).state).toBe(initial);
      const { allowed, refused } = pairs(table as TransitionTable<string>);
      expect(allowed.length).toBeGreaterThan(5);
      for (const [from, to] of allowed) {
        const m = machineIn(table as TransitionTable<string>, initial, from);
        m.transition(to);
        expect(m.state).toBe(to);
      }
      for (const [from, to] of refused) {
        const m = machineIn(table as TransitionTable<string>, initial, from);
        expect(() => m.transition(to)).toThrow(InvalidTransitionError);
        expect(m.state).toBe(from);
      }
    });
  }

  test("the model path the scheduler takes, and the jumps it must never make", () => {
    const m = modelLifecycle("m");
    expect(() => m.transition("ready")).toThrow("model 'm' cannot go from unloaded to ready");
    for (const s of ["loading", "ready", "unloading", "unloaded", "loading", "failed", "loading", "ready", "unloading", "failed"] as ModelState[]) m.transition(s);
    expect(() => m.transition("ready")).toThrow(InvalidTransitionError);
  });

  test("the worker path the supervisor takes: crash, restart, give up, stop", () => {
    const m = workerLifecycle("m");
    for (const s of ["starting", "ready", "busy", "crashed", "starting", "crashed", "failed"] as WorkerState[]) m.transition(s);
    expect(() => m.transition("starting")).toThrow("the MLX worker for m cannot go from failed to starting");
    m.transition("stopped");
  });
});

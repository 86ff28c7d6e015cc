// A loaded model's lifecycle in the scheduler, as a transition table over the one state machine
// (src/util/state-machine.ts).

import { StateMachine, type StateMachineOptions, type TransitionTable } from "../util/state-machine.ts";

export type ModelState = "unloaded" | "loading" | "ready" | "unloading" | "failed";

export const MODEL_TRANSITIONS: TransitionTable<ModelState> = {
  unloaded: ["loading"],
  loading: ["ready", "failed"],
  ready: ["unloading"],
  // failed: the engine gave up on a loaded model (an MLX worker that kept crashing) and it was freed.
  unloading: ["unloaded", "failed"],
  failed: ["loading", "unloaded"],
};

export function modelLifecycle(id: string, opts: StateMachineOptions<ModelState> = {}): StateMachine<ModelState> {
  return new StateMachine(`model '${id}'`, MODEL_TRANSITIONS, "unloaded", opts);
}

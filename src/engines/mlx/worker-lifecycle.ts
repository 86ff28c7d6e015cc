// An MLX worker process's lifecycle, as a transition table over the one state machine
// (src/util/state-machine.ts):
//
//   stopped ──start──▶ starting ──loaded──▶ ready ⇄ busy (requests running)
//                          │                  │      │
//                          └──── crashed ◀────┴──────┘   (exit, garbage on stdout, no heartbeat)
//                                   │
//                                   ├─ after back-off ─▶ starting
//                                   └─ too many crashes in the window ─▶ failed (no more restarts)
//   starting/ready/busy/crashed/failed ──stop──▶ stopping ──exit──▶ stopped

import { StateMachine, type StateMachineOptions, type TransitionTable } from "../../util/state-machine.ts";

export type WorkerState = "stopped" | "starting" | "ready" | "busy" | "stopping" | "crashed" | "failed";

export const WORKER_TRANSITIONS: TransitionTable<WorkerState> = {
  stopped: ["starting"],
  starting: ["ready", "crashed", "stopping"],
  ready: ["busy", "stopping", "crashed"],
  busy: ["ready", "stopping", "crashed"],
  stopping: ["stopped"],
  crashed: ["starting", "stopping", "stopped", "failed"],
  failed: ["stopping", "stopped"],
};

export function workerLifecycle(label: string, opts: StateMachineOptions<WorkerState> = {}): StateMachine<WorkerState> {
  return new StateMachine(`the MLX worker for ${label}`, WORKER_TRANSITIONS, "stopped", opts);
}

// In-process event bus: the scheduler and download jobs publish, the /admin/v1/events stream and
// the load-history recorder subscribe. Publishers never wait on subscribers.
import { log } from "../log.ts";

export type LmxEvent =
  | { type: "model.loading"; model: string; contextLength: number; parallel: number; threads: number }
  | { type: "model.loaded"; model: string; contextLength: number; memoryBytes: number; ms: number }
  | { type: "model.load_failed"; model: string; error: string }
  | { type: "model.unloaded"; model: string; reason: "request" | "evict" | "ttl" | "shutdown" | "ended" }
  /** A loaded model broke for good (its engine gave up on it) and was freed. */
  | { type: "model.failed"; model: string; error: string }
  | { type: "download.queued" | "download.started" | "download.done" | "download.cancelled"; id: string; spec: string; model?: string }
  | { type: "download.failed"; id: string; spec: string; error: string }
  | { type: "download.progress"; id: string; spec: string; file: string; bytesDone: number; bytesTotal: number; rate: number; etaSeconds: number | null; retrying: string | null }
  | { type: "probe.started"; id: string; model: string }
  | { type: "probe.step"; id: string; model: string; contextLength: number; loads: boolean; works: boolean; decidedBy: string | null; detail: string; ms: number }
  | { type: "probe.done"; id: string; model: string; testedContextLength: number; reason: string }
  | { type: "probe.failed"; id: string; model: string; error: string }
  | { type: "peer.up"; peer: string; models: number; latencyMs: number }
  /** A peer failed its health poll or a proxied request could not reach it; `state` says which. */
  | { type: "peer.down"; peer: string; state: "down" | "auth_error"; error: string }
  | { type: "engine_build.queued" | "engine_build.started" | "engine_build.cancelled"; id: string; ref: string }
  | { type: "engine_build.progress"; id: string; ref: string; phase: "prepare" | "fetch" | "configure" | "compile" | "verify" | "register"; percent: number | null }
  | { type: "engine_build.done"; id: string; ref: string; version: string; commit: string }
  | { type: "engine_build.failed"; id: string; ref: string; error: string }
  | { type: "error"; message: string };

export type Stamped = LmxEvent & { time: string; seq: number };

export class EventBus {
  private readonly listeners = new Set<(e: Stamped) => void>();
  private seq = 0;

  publish(event: LmxEvent): void {
    const stamped: Stamped = { ...event, time: new Date().toISOString(), seq: ++this.seq };
    for (const l of this.listeners) {
      try {
        l(stamped);
      } catch (err) {
        log.warn("event listener failed", { error: String(err) });
      }
    }
  }

  subscribe(listener: (e: Stamped) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

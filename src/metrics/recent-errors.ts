// The last few failures a person looking at the server wants to see: failed requests (reported by
// the metrics observer) and failed loads, downloads and probes (published on the event bus).
// Bounded, so a client sending bad requests in a loop cannot grow it.
import type { Stamped } from "../events/bus.ts";

export interface RecentError {
  time: string;
  source: "request" | "model" | "download" | "probe" | "server";
  model: string | null;
  message: string;
  /** The HTTP status a failed request was answered with; null for the others. */
  status: number | null;
}

const KEEP = 50;
const MAX_MESSAGE = 1000;

export class RecentErrors {
  private readonly items: RecentError[] = [];

  add(error: Omit<RecentError, "time">): void {
    this.items.push({ ...error, message: error.message.slice(0, MAX_MESSAGE), time: new Date().toISOString() });
    if (this.items.length > KEEP) this.items.shift();
  }

  /** Newest first. */
  list(): RecentError[] {
    return [...this.items].reverse();
  }

  /** Keeps the failures among the bus's events; the rest are ignored. */
  noteEvent(e: Stamped): void {
    switch (e.type) {
      case "model.load_failed":
      case "model.failed":
        return this.add({ source: "model", model: e.model, message: e.error, status: null });
      case "download.failed":
        return this.add({ source: "download", model: e.spec, message: e.error, status: null });
      case "probe.failed":
        return this.add({ source: "probe", model: e.model, message: e.error, status: null });
      case "error":
        return this.add({ source: "server", model: null, message: e.message, status: null });
    }
  }
}

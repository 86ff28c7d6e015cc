// One reader of /admin/v1/events for the whole page: views watch these signals instead of each
// opening a stream of its own.
import { signal } from "@preact/signals";
import { isAbort, needsKey, sse } from "./api.ts";

/** What every event of /admin/v1/events carries (src/events/bus.ts has them all). */
export interface Stamped {
  type: string;
  seq: number;
  time: string;
}

export interface ProgressEvent extends Stamped {
  type: "download.progress";
  id: string;
  bytesDone: number;
  bytesTotal: number;
  rate: number;
  etaSeconds: number | null;
  retrying: string | null;
}

const isProgress = (e: Stamped): e is ProgressEvent => e.type === "download.progress";

/** The newest event of any type (views reload their lists on the ones that concern them). */
export const lastEvent = signal<Stamped | null>(null);
/** The latest progress of each download job, by job id. */
export const progress = signal<Record<string, ProgressEvent>>({});
export const connected = signal(false);

const RETRY_MS = 3000;
let running: AbortController | undefined;

function take(e: Stamped): void {
  if (isProgress(e)) progress.value = { ...progress.value, [e.id]: e };
  lastEvent.value = e;
}

/** Reads the stream until stop(); reconnects after a drop, and waits for a key after a 401. */
export function startEvents(): void {
  if (running) return;
  const controller = new AbortController();
  running = controller;
  void (async () => {
    while (!controller.signal.aborted) {
      try {
        for await (const { data } of sse("/admin/v1/events", { signal: controller.signal, onOpen: () => (connected.value = true) })) {
          take(JSON.parse(data) as Stamped);
        }
      } catch (err) {
        if (isAbort(err)) break;
      }
      connected.value = false;
      if (needsKey.value) break;
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
    if (running === controller) running = undefined;
  })();
}

export function stopEvents(): void {
  running?.abort();
  running = undefined;
  connected.value = false;
}

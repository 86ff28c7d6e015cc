import { log } from "../log.ts";

/**
 * Awaits `work`, logging a warning every `everyMs` while it is still pending, so a step that hangs
 * (a shutdown waiting on a generation, an engine that will not dispose) says which one it is.
 */
export async function watched<T>(what: string, work: Promise<T>, everyMs = 5000): Promise<T> {
  const started = Date.now();
  const timer = setInterval(() => log.warn("still waiting", { for: what, seconds: Math.round((Date.now() - started) / 1000) }), everyMs);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

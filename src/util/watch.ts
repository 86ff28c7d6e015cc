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

/**
 * Like watched(), but stops waiting after `limitMs`: resolves true when `work` settled in time (a
 * failure is logged and counts as settled), false when it was given up on. For shutdown steps that
 * may never finish (a native free that waits on a leaked handle), where exiting beats waiting.
 */
export async function bounded(what: string, work: Promise<unknown>, limitMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), limitMs); });
  try {
    const settled = await Promise.race([
      watched(what, work).then(() => true, (err: unknown) => {
        log.warn("failed", { for: what, error: err instanceof Error ? err.message : String(err) });
        return true;
      }),
      limit,
    ]);
    if (!settled) log.warn("gave up waiting", { for: what, seconds: Math.round(limitMs / 1000) });
    return settled;
  } finally {
    clearTimeout(timer);
  }
}

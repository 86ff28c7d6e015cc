import { errorBody } from "./errors.ts";

export type Send = (data: unknown) => void;

/** How events are framed: Chat Completions sends bare `data:` lines ending in `data: [DONE]`; Responses names each event. */
export interface SseFraming {
  /** The `event:` line of a payload, if it has one. */
  eventName?: (data: unknown) => string | undefined;
  /** End the stream with `data: [DONE]` (default true). */
  done?: boolean;
}

/**
 * Starts a streamed generation but sends the HTTP status only once the first event exists, so
 * failures found before any output (unknown model, context too long, full queue) still reach the
 * client as a normal JSON error with the right status. Output is Server-Sent Events, framed as
 * `framing` says (default: bare `data:` lines ending in `data: [DONE]`). A client that disconnects aborts the generation through `signal`.
 */
export async function sseResponse(requestSignal: AbortSignal, run: (send: Send, signal: AbortSignal) => Promise<void>, framing: SseFraming = {}): Promise<Response> {
  const abort = new AbortController();
  const onClientGone = () => abort.abort();
  requestSignal.addEventListener("abort", onClientGone, { once: true });
  const encoder = new TextEncoder();
  const pending: Uint8Array[] = [];
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  let firstEvent: (() => void) | undefined;
  const started = new Promise<void>((resolve) => (firstEvent = resolve));

  const push = (bytes: Uint8Array) => {
    if (controller) controller.enqueue(bytes);
    else pending.push(bytes);
  };
  const send: Send = (data) => {
    if (abort.signal.aborted) return;
    const name = framing.eventName?.(data);
    push(encoder.encode(`${name ? `event: ${name}\n` : ""}data: ${JSON.stringify(data)}\n\n`));
    firstEvent?.();
  };

  let finished = false;
  const done = run(send, abort.signal).then(
    () => undefined,
    (err: unknown) => err,
  );
  const outcome = await Promise.race([started.then(() => "started" as const), done.then((err) => ({ err }))]);
  if (typeof outcome === "object" && outcome.err !== undefined && pending.length === 0) {
    requestSignal.removeEventListener("abort", onClientGone);
    throw outcome.err;
  }

  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      for (const bytes of pending.splice(0)) c.enqueue(bytes);
      void done.then((err) => {
        requestSignal.removeEventListener("abort", onClientGone);
        if (finished) return;
        finished = true;
        try {
          if (err !== undefined && !abort.signal.aborted) c.enqueue(encoder.encode(`data: ${JSON.stringify(errorBody(err))}\n\n`));
          if (!abort.signal.aborted && framing.done !== false) c.enqueue(encoder.encode("data: [DONE]\n\n"));
          c.close();
        } catch {
          // The client went away while we were finishing; nothing left to tell it.
        }
      });
    },
    cancel() {
      finished = true;
      abort.abort();
    },
  });
  return new Response(stream, {
    status: 200,
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" },
  });
}

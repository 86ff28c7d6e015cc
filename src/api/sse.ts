import { errorBody } from "./errors.ts";

/** Sends one event: its JSON data, under an `event:` name for APIs that name their events (SSE). */
export type Send = (data: unknown, event?: string) => void;

/** How a streamed answer is written: each payload, the error that ends it, what closes it. */
export interface StreamFormat {
  contentType: string;
  frame(data: unknown, event?: string): string;
  /** The last frame of a stream that failed after it had started. */
  error(err: unknown): string;
  /** Written after the last frame of a stream that was not aborted (OpenAI's [DONE]). */
  end?: string;
}

const sseFrame = (data: unknown, event?: string) => `${event ? `event: ${event}\n` : ""}data: ${JSON.stringify(data)}\n\n`;

/**
 * Server-Sent Events: a failure after output began is `error(err)`'s event, and `end` closes the
 * stream. OpenAI's (the default) sends the error body as data, then `data: [DONE]`.
 */
export function sseFormat(error: (err: unknown) => { event?: string; data: unknown } = (err) => ({ data: errorBody(err) }), end: string | null = "data: [DONE]\n\n"): StreamFormat {
  return {
    contentType: "text/event-stream; charset=utf-8",
    frame: sseFrame,
    error: (err) => {
      const { event, data } = error(err);
      return sseFrame(data, event);
    },
    ...(end !== null ? { end } : {}),
  };
}

const OPENAI_SSE = sseFormat();

/** The streamed answers built here: whether the last byte is handed over, and whom to tell. */
type StreamEnd = { ended: boolean; onEnd?: () => void };
const streamEnds = new WeakMap<Response, StreamEnd>();

/**
 * Calls `onEnd` as a response from `streamResponse` hands over its last byte (at once if it
 * already has); false for any other response. The app acts on the end without wrapping the body
 * in another stream, which cost each chunk a promise hop (≈3 µs a chunk measured, and a slower
 * p90 first byte). Called in the same tick as the stream closes, not after it: once the runtime
 * has finished the response, the request can no longer change its connection's idle timeout.
 */
export function onStreamEnd(response: Response, onEnd: () => void): boolean {
  const end = streamEnds.get(response);
  if (!end) return false;
  // A short generation can be over before the app sees its response.
  if (end.ended) onEnd();
  else end.onEnd = onEnd;
  return true;
}

/**
 * Starts a streamed generation but sends the HTTP status only once the first event exists, so
 * failures found before any output (unknown model, context too long, full queue) still reach the
 * client as a normal JSON error with the right status. A client that disconnects aborts the
 * generation through `signal`.
 *
 * Frames that arrive while the previous write is still waiting to be taken (the client or its
 * socket is behind the generation) are joined and go out as one write when the stream asks for
 * more: one write per token is what a fast model cannot afford, and a write that carries several
 * frames still delivers each as its own event, in order.
 */
export async function streamResponse(requestSignal: AbortSignal, format: StreamFormat, run: (send: Send, signal: AbortSignal) => Promise<void>): Promise<Response> {
  const abort = new AbortController();
  const onClientGone = () => abort.abort();
  requestSignal.addEventListener("abort", onClientGone, { once: true });
  const encoder = new TextEncoder();
  /** Frames not handed to the stream yet. */
  let waiting = "";
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  let firstEvent: (() => void) | undefined;
  const started = new Promise<void>((resolve) => (firstEvent = resolve));

  const flush = (c: ReadableStreamDefaultController<Uint8Array>) => {
    if (waiting === "") return;
    const bytes = encoder.encode(waiting);
    // Emptied first: enqueue may call `pull`, which flushes again.
    waiting = "";
    c.enqueue(bytes);
  };
  const send: Send = (data, event) => {
    if (abort.signal.aborted) return;
    waiting += format.frame(data, event);
    // desiredSize ≤ 0: the last write is still queued; `pull` sends what gathered once it is taken.
    if (controller && (controller.desiredSize ?? 1) > 0) flush(controller);
    firstEvent?.();
  };

  let finished = false;
  const end: StreamEnd = { ended: false };
  const done = run(send, abort.signal).then(
    () => undefined,
    (err: unknown) => err,
  );
  const outcome = await Promise.race([started.then(() => "started" as const), done.then((err) => ({ err }))]);
  if (typeof outcome === "object" && outcome.err !== undefined && waiting === "") {
    requestSignal.removeEventListener("abort", onClientGone);
    throw outcome.err;
  }

  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      flush(c);
      void done.then((err) => {
        requestSignal.removeEventListener("abort", onClientGone);
        if (finished) return;
        finished = true;
        try {
          if (err !== undefined && !abort.signal.aborted) waiting += format.error(err);
          if (!abort.signal.aborted && format.end) waiting += format.end;
          flush(c);
          end.ended = true;
          end.onEnd?.();
          c.close();
        } catch {
          // The client went away while we were finishing; nothing left to tell it.
        }
      });
    },
    pull(c) {
      flush(c);
    },
    cancel() {
      finished = true;
      abort.abort();
    },
  });
  const response = new Response(stream, {
    status: 200,
    headers: { "content-type": format.contentType, "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" },
  });
  streamEnds.set(response, end);
  return response;
}

/** Server-Sent Events, OpenAI's framing unless `format` says otherwise (sseFormat). */
export function sseResponse(requestSignal: AbortSignal, run: (send: Send, signal: AbortSignal) => Promise<void>, format: StreamFormat = OPENAI_SSE): Promise<Response> {
  return streamResponse(requestSignal, format, run);
}

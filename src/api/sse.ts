import { errorBody } from "./errors.ts";

/** Sends one event: its JSON data, under an `event:` name for APIs that name their events. */
export type Send = (data: unknown, event?: string) => void;

/** How an API frames its stream's end and a failure after output began. */
export interface SseDialect {
  /** Written after the last event, when the API has an end marker. */
  end?: string;
  error(err: unknown): { event?: string; data: unknown };
}

/** OpenAI's: the error body as a data event, then `data: [DONE]`. */
const OPENAI_SSE: SseDialect = { end: "data: [DONE]\n\n", error: (err) => ({ data: errorBody(err) }) };

const frame = (data: unknown, event?: string) => `${event ? `event: ${event}\n` : ""}data: ${JSON.stringify(data)}\n\n`;

/**
 * Starts a streamed generation but sends the HTTP status only once the first event exists, so
 * failures found before any output (unknown model, context too long, full queue) still reach the
 * client as a normal JSON error with the right status. Output is Server-Sent Events, framed as
 * `dialect` says (OpenAI's by default: ending in `data: [DONE]`). A client that disconnects aborts
 * the generation through `signal`.
 */
export async function sseResponse(requestSignal: AbortSignal, run: (send: Send, signal: AbortSignal) => Promise<void>, dialect: SseDialect = OPENAI_SSE): Promise<Response> {
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
  const send: Send = (data, event) => {
    if (abort.signal.aborted) return;
    push(encoder.encode(frame(data, event)));
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
          if (err !== undefined && !abort.signal.aborted) {
            const { event, data } = dialect.error(err);
            c.enqueue(encoder.encode(frame(data, event)));
          }
          if (dialect.end && !abort.signal.aborted) c.enqueue(encoder.encode(dialect.end));
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

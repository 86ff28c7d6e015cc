// One request forwarded to a peer. Its answer is passed on chunk by chunk as it arrives (never
// collected first), so a streamed answer streams through. Until the first byte of the answer has
// arrived the request may still go to the next target of a fallback chain: the peer could not be
// reached, refused (429/503, or our key), or sent nothing within the first-byte bound. After the
// first byte the answer is the client's, failures included.
import { errorMessage, GenerationAbortedError } from "../errors.ts";

/** Most bytes passed on from one peer answer. */
export const MAX_PROXIED_BYTES = 512 * 1024 * 1024;

export interface ProxyCall {
  url: string;
  /** POST unless given. */
  method?: "GET" | "POST" | "DELETE";
  headers: Record<string, string>;
  /** None for GET and DELETE. */
  body?: string;
  /** The client's: aborting it cancels the upstream request. */
  signal: AbortSignal;
  /** Bound on the first byte of the answer, and then on each wait for the next chunk. */
  firstByteMs: number;
  /** Most bytes passed on (MAX_PROXIED_BYTES unless given). */
  maxBytes?: number;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  /** How an answer passed on ended (its error statuses are the caller's to tell). */
  onEnd?: (how: "ok" | "aborted" | "cut", status: number) => void;
}

export type ProxyOutcome =
  | { kind: "answer"; status: number; headers: Record<string, string>; body: ReadableStream<Uint8Array> | null }
  /** Try the next target. `down`: the peer could not be reached; `auth`: it refused our key. */
  | { kind: "skip"; reason: string; down?: boolean; auth?: boolean; timedOut?: boolean };

const PASSED_HEADERS = ["content-type", "retry-after", "cache-control"];

class FirstByteTimeout extends Error {
  override name = "FirstByteTimeout";
}

function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));
}

export async function proxy(call: ProxyCall): Promise<ProxyOutcome> {
  const upstream = new AbortController();
  const onClientGone = () => upstream.abort(new GenerationAbortedError());
  if (call.signal.aborted) throw new GenerationAbortedError();
  call.signal.addEventListener("abort", onClientGone, { once: true });
  const release = () => call.signal.removeEventListener("abort", onClientGone);
  let timer = setTimeout(() => upstream.abort(new FirstByteTimeout()), call.firstByteMs);
  const fail = (err: unknown): ProxyOutcome => {
    clearTimeout(timer);
    release();
    if (call.signal.aborted) throw new GenerationAbortedError();
    if (upstream.signal.reason instanceof FirstByteTimeout) {
      return { kind: "skip", reason: `no first byte within ${call.firstByteMs / 1000} s`, timedOut: true };
    }
    return { kind: "skip", reason: `unreachable: ${errorMessage(err)}`, down: true };
  };
  let res: Response;
  try {
    // Raced with the abort as well: the bound holds even for a fetch that would not honour it.
    res = await Promise.race([
      (call.fetch ?? fetch)(call.url, { method: call.method ?? "POST", headers: call.headers, body: call.body, signal: upstream.signal, redirect: "error" }),
      rejectOnAbort(upstream.signal),
    ]);
  } catch (err) {
    return fail(err);
  }
  if (res.status === 429 || res.status === 503 || res.status === 401 || res.status === 403) {
    clearTimeout(timer);
    release();
    upstream.abort();
    const auth = res.status === 401 || res.status === 403;
    return { kind: "skip", reason: auth ? `refused our API key (${res.status})` : `answered ${res.status}`, auth };
  }
  const headers: Record<string, string> = {};
  for (const name of PASSED_HEADERS) {
    const value = res.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  let ended = false;
  const end = (how: "ok" | "aborted" | "cut") => {
    if (ended) return;
    ended = true;
    call.onEnd?.(how, res.status);
  };
  if (!res.body) {
    clearTimeout(timer);
    release();
    end("ok");
    return { kind: "answer", status: res.status, headers, body: null };
  }
  const reader = res.body.getReader();
  let first: Awaited<ReturnType<typeof reader.read>>;
  try {
    first = await Promise.race([reader.read(), rejectOnAbort(upstream.signal)]);
  } catch (err) {
    return fail(err);
  }
  clearTimeout(timer);
  let sent = 0;
  const maxBytes = call.maxBytes ?? MAX_PROXIED_BYTES;
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      if (first.done) {
        release();
        end("ok");
        c.close();
        return;
      }
      sent += first.value.byteLength;
      c.enqueue(first.value);
    },
    async pull(c) {
      // A peer that stops sending mid-answer is cut off after the same bound as a silent start.
      timer = setTimeout(() => upstream.abort(new FirstByteTimeout()), call.firstByteMs);
      try {
        const { value, done } = await Promise.race([reader.read(), rejectOnAbort(upstream.signal)]);
        if (done) {
          release();
          end("ok");
          c.close();
          return;
        }
        sent += value.byteLength;
        if (sent > maxBytes) {
          upstream.abort();
          release();
          end("cut");
          c.error(new Error(`the peer's answer passed ${maxBytes} bytes`));
          return;
        }
        c.enqueue(value);
      } catch (err) {
        end(call.signal.aborted ? "aborted" : "cut");
        release();
        void reader.cancel().catch(() => undefined);
        c.error(err);
      } finally {
        clearTimeout(timer);
      }
    },
    cancel() {
      clearTimeout(timer);
      release();
      end("aborted");
      upstream.abort();
    },
  });
  return { kind: "answer", status: res.status, headers, body: stream };
}

// Talking to the hub for downloads: the fetch that keeps the token on the hub's origin, the
// mapping of failures to typed errors, and retries with back-off.

import type { HubApiError } from "@huggingface/hub";
import { isHubApiError } from "./hub-lib.ts";
import { HubAuthError, HubNotFoundError, HubUnavailableError, LmxError, errorMessage } from "../errors.ts";
import { log } from "../log.ts";

export interface Context {
  repo: string;
  revision: string;
  hubUrl: string;
  hubOrigin: string;
  token: string | undefined;
  cacheDir: string;
  signal: AbortSignal | undefined;
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  idleTimeoutMs: number;
  /** For transfers: no time limit of its own (the idle timer in transfer.ts bounds a stall). */
  fetch: typeof fetch;
  /** For metadata calls: each request, body included, is bounded in time. */
  metadataFetch: typeof fetch;
  /** Told before each retry, so a stall shows in the progress instead of looking like a hang. */
  onRetry?: (retry: RetryNotice) => void;
}

export interface RetryNotice {
  what: string;
  /** The attempt about to start (2 for the first retry). */
  attempt: number;
  attempts: number;
  /** Why the last attempt failed, e.g. "no data for 20 s". */
  reason: string;
  retryInMs: number;
}

/** A non-2xx answer from our own ranged fetch (the library raises HubApiError for its calls). */
export class HttpStatusError extends Error {
  constructor(readonly status: number, readonly url: string, readonly detail: string) {
    super(`HTTP ${status} from ${url}${detail ? `: ${detail}` : ""}`);
  }
}

/** Retry-worthy conditions of a transfer that are not HTTP errors: short bodies, wrong ranges, stalls. */
export class TransferError extends Error {}

/** The hub could not be reached at all (as opposed to answering with an error): the cache may serve. */
export class HubUnreachableError extends HubUnavailableError {}

// ---- errors ----

function hubMessage(err: HubApiError): string {
  const data: unknown = err.data;
  if (data && typeof data === "object" && "error" in data && typeof data.error === "string") return data.error;
  return err.message.replace(/\. URL: .*$/s, "");
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/** Maps any failure to a typed error and says whether trying again could help. */
function classify(err: unknown, ctx: Context, what: string): { error: Error; retriable: boolean } {
  if (err instanceof LmxError) return { error: err, retriable: false };
  let status: number | null = null;
  let detail = "";
  if (isHubApiError(err)) {
    status = err.statusCode;
    detail = hubMessage(err);
  } else if (err instanceof HttpStatusError) {
    status = err.status;
    detail = err.detail;
  }
  if (status !== null) {
    if (status === 401 || status === 403) {
      const message = ctx.token
        ? `access to ${ctx.repo} denied with the configured HF_TOKEN: ${detail || `HTTP ${status}`} (check the token, and accept the repo's terms on the hub if it is gated)`
        : `authentication required for ${ctx.repo}: set HF_TOKEN (a token from ${ctx.hubUrl}/settings/tokens; gated repos also need their terms accepted, and the hub answers this for repos that do not exist too). Hub said: ${detail || `HTTP ${status}`}`;
      return { error: new HubAuthError(message), retriable: false };
    }
    if (status === 404) {
      return { error: new HubNotFoundError(`${what}: not found on ${ctx.hubUrl} (${detail || "HTTP 404"})`), retriable: false };
    }
    const retriable = status >= 500 || status === 429 || status === 408;
    return { error: new HubUnavailableError(`${what}: the hub answered HTTP ${status}${detail ? ` (${detail})` : ""}`), retriable };
  }
  if (err instanceof TransferError) return { error: new HubUnavailableError(`${what}: ${err.message}`), retriable: true };
  // fetch reports the network (refused, reset, DNS, TLS) as TypeErrors. File system errors
  // (ENOSPC, EACCES...) carry a syscall and are not helped by retrying.
  if ((err instanceof TypeError && !("syscall" in err)) || isAbort(err)) {
    return { error: new HubUnreachableError(`${what}: cannot reach ${ctx.hubUrl}: ${errorMessage(err)}`), retriable: true };
  }
  return { error: new HubUnavailableError(`${what}: ${errorMessage(err)}`), retriable: false };
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new DOMException("download cancelled", "AbortError");
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason instanceof Error ? signal.reason : new DOMException("download cancelled", "AbortError"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export async function withRetry<T>(ctx: Context, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(ctx.signal);
    try {
      return await fn();
    } catch (err) {
      throwIfAborted(ctx.signal);
      const { error, retriable } = classify(err, ctx, what);
      if (!retriable || attempt >= ctx.attempts) {
        if (retriable) error.message += ` (gave up after ${attempt} attempts)`;
        throw error;
      }
      const delay = Math.min(ctx.maxDelayMs, ctx.baseDelayMs * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
      log.warn("hub request failed, retrying", { what, attempt, error: error.message, retryInMs: Math.round(delay) });
      const reason = err instanceof TransferError ? err.message : error.message.replace(`${what}: `, "");
      ctx.onRetry?.({ what, attempt: attempt + 1, attempts: ctx.attempts, reason, retryInMs: Math.round(delay) });
      await sleep(delay, ctx.signal);
    }
  }
}

// ---- HTTP ----

function headerRecord(init: RequestInit["headers"]): Record<string, string> {
  const out: Record<string, string> = {};
  new Headers(init).forEach((v, k) => {
    out[k] = v;
  });
  return out;
}

/**
 * fetch that follows redirects itself so the Authorization header goes only to the hub's origin:
 * the hub redirects file downloads to a CDN with a signed URL, which must not see the token.
 * Also handed to the library, whose own calls then get the same treatment.
 */
export function makeHubFetch(hubOrigin: string): typeof fetch {
  const hubFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    if ((method !== "GET" && method !== "HEAD") || input instanceof Request) return fetch(input, init);
    let url = new URL(input);
    const headers = headerRecord(init?.headers);
    for (let hop = 0; hop < 10; hop++) {
      // Checked on every hop, the first included: the library may hand back a CDN URL directly.
      if (url.origin !== hubOrigin) delete headers.authorization;
      const res = await fetch(url, { ...init, headers, redirect: "manual" });
      const location = res.headers.get("location");
      if (![301, 302, 303, 307, 308].includes(res.status) || !location) return res;
      await res.body?.cancel();
      url = new URL(location, url);
    }
    throw new TypeError(`too many redirects from ${String(input)}`);
  };
  return Object.assign(hubFetch, { preconnect: fetch.preconnect });
}

/**
 * `base` with every request bounded to `timeoutMs`, reading the body included (the signal stays
 * attached to the response), so a hub that stalls mid-answer fails instead of hanging. Handed to
 * @huggingface/hub's calls, which take a custom fetch.
 */
export function timeoutFetch(base: typeof fetch, timeoutMs: number): typeof fetch {
  const bounded = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = init?.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    return base(input, { ...init, signal });
  };
  return Object.assign(bounded, { preconnect: fetch.preconnect });
}

/** "20 s", "0.3 s": for messages people read while a download stalls. */
export function seconds(ms: number): string {
  return `${ms >= 10_000 ? Math.round(ms / 1000) : Number((ms / 1000).toFixed(1))} s`;
}

// A peer's error answer, re-read as this server's typed error: the caller then gets it in the
// shape of the API it called (OpenAI's, Anthropic's, Ollama's), whatever shape the peer wrote.
import { type ErrorType, LmxError } from "../errors.ts";
import { readBounded } from "./bounded.ts";

/** Largest error body read from a peer. */
const MAX_ERROR_BODY = 64 * 1024;
const MAX_MESSAGE = 2000;

const TYPES: ReadonlySet<string> = new Set<ErrorType>(["invalid_request_error", "authentication_error", "permission_error", "not_found_error", "server_error", "overloaded_error"]);

/** The peer's error, with its message, type and code where it gave them in a shape LMX knows. */
export class PeerError extends LmxError {
  constructor(readonly peer: string, message: string, status: number, type: ErrorType, code: string | null, param: string | null) {
    super(`peer ${peer}: ${message}`, status, type, code, param);
  }
}

const text = (x: unknown, max: number): string | undefined => (typeof x === "string" && x.length > 0 ? x.slice(0, max) : undefined);

/** OpenAI's `{error: {message, type, code, param}}`, Anthropic's `{type: "error", error: {type, message}}`, Ollama's `{error}`. */
export async function peerError(peer: string, status: number, body: ReadableStream<Uint8Array> | null): Promise<PeerError> {
  const raw = body ? await readBounded(new Response(body), MAX_ERROR_BODY).catch(() => undefined) : undefined;
  let parsed: unknown;
  try {
    parsed = raw === undefined ? undefined : JSON.parse(raw);
  } catch {
    parsed = undefined;
  }
  const error = (parsed as { error?: unknown } | undefined)?.error;
  const detail = typeof error === "object" && error !== null ? error as Record<string, unknown> : {};
  const message = text(error, MAX_MESSAGE) ?? text(detail.message, MAX_MESSAGE) ?? text(raw, 300) ?? `the peer answered ${status}`;
  const type = typeof detail.type === "string" && TYPES.has(detail.type) ? detail.type as ErrorType : status >= 500 ? "server_error" : "invalid_request_error";
  return new PeerError(peer, message, status, type, text(detail.code, 200) ?? null, text(detail.param, 200) ?? null);
}

import * as v from "valibot";
import { LmxError } from "../errors.ts";
import { log } from "../log.ts";
import { AbortedWhileQueuedError } from "../scheduler/slots.ts";

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export interface Mapped {
  status: number;
  body: ErrorBody;
  headers?: Record<string, string>;
}

/**
 * An API whose errors have a body of their own (Anthropic's `{type: "error", error: {type,
 * message}}`, Ollama's `{error}`): the paths it owns, and its body for an error mapped once above.
 * Status codes and headers stay those of mapError.
 */
export interface ErrorDialect {
  owns(pathname: string): boolean;
  body(mapped: Mapped): unknown;
}

/** An error as the API that owns `pathname` writes it: OpenAI's shape unless a dialect claims the path. */
export function mapErrorFor(dialects: readonly ErrorDialect[], pathname: string, err: unknown, code?: string | number): { status: number; body: unknown; headers?: Record<string, string>; message: string } {
  const mapped = mapError(err, code);
  const dialect = dialects.find((d) => d.owns(pathname));
  return { status: mapped.status, headers: mapped.headers, message: mapped.body.error.message, body: dialect ? dialect.body(mapped) : mapped.body };
}

const body = (message: string, type: string, param: string | null, code: string | null): ErrorBody => ({ error: { message, type, param, code } });

/** valibot's issue path as OpenAI names fields: messages[0].content. */
function issuePath(issue: v.BaseIssue<unknown> | undefined): string | null {
  if (!issue?.path) return null;
  let out = "";
  for (const item of issue.path) {
    const key = (item as { key?: unknown }).key;
    if (typeof key === "number") out += `[${key}]`;
    else if (key !== undefined) out += (out ? "." : "") + String(key);
  }
  return out || null;
}

/** The one mapping from any thrown value to an HTTP status and OpenAI's error shape. */
export function mapError(err: unknown, code?: string | number): Mapped {
  if (err instanceof LmxError) {
    const mapped: Mapped = { status: err.status, body: body(err.message, err.type, err.param, err.code) };
    if (err.retryAfterSeconds !== undefined) mapped.headers = { "retry-after": String(err.retryAfterSeconds) };
    return mapped;
  }
  // A %-escape that does not decode, wherever a route decodes one.
  if (err instanceof URIError) return { status: 400, body: body(`malformed %-escape in the request: ${err.message}`, "invalid_request_error", null, "invalid_path") };
  if (err instanceof AbortedWhileQueuedError) return { status: 499, body: body("client closed the request", "invalid_request_error", null, "client_closed") };
  switch (code) {
    case "VALIDATION": {
      const issue = (err as { valueError?: v.BaseIssue<unknown> }).valueError;
      const param = issuePath(issue);
      const message = issue?.message ?? "invalid request body";
      return { status: 400, body: body(param ? `${param}: ${message}` : message, "invalid_request_error", param, "invalid_value") };
    }
    case "PARSE":
      // Our body reader's own refusals (size, depth, type) arrive wrapped by the framework.
      if ((err as { cause?: unknown }).cause instanceof LmxError) return mapError((err as { cause: unknown }).cause);
      return { status: 400, body: body("request body is not valid JSON", "invalid_request_error", null, "invalid_json") };
    case "NOT_FOUND":
      return { status: 404, body: body("no such route", "invalid_request_error", null, "unknown_route") };
    case "INVALID_COOKIE_SIGNATURE":
    case "INVALID_FILE_TYPE":
      return { status: 400, body: body(String((err as Error).message), "invalid_request_error", null, null) };
  }
  const status = typeof (err as { status?: unknown })?.status === "number" ? (err as { status: number }).status : 500;
  if (status >= 400 && status < 500) {
    return { status, body: body((err as Error).message || "bad request", "invalid_request_error", null, null) };
  }
  log.error("unhandled error", { error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  return { status: 500, body: body("internal server error: " + (err instanceof Error ? err.message : String(err)), "server_error", null, "internal_error") };
}

export function errorBody(err: unknown): ErrorBody {
  return mapError(err).body;
}

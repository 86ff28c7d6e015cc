// Anthropic's error shape, {"type": "error", "error": {"type", "message"}}, for the Messages
// routes: the status is mapped once (src/api/errors.ts), the type follows from it as Anthropic
// names its errors, so auth, Host and body-size refusals come out in this shape too.
import { type ErrorDialect, type Mapped, mapError } from "../errors.ts";
import { sseFormat, type StreamFormat } from "../sse.ts";

export type AnthropicErrorType =
  | "invalid_request_error" | "authentication_error" | "permission_error" | "not_found_error"
  | "rate_limit_error" | "overloaded_error" | "api_error";

export function anthropicErrorType(status: number): AnthropicErrorType {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
  }
  return status >= 400 && status < 500 ? "invalid_request_error" : "api_error";
}

function anthropicBody(mapped: Mapped) {
  return { type: "error", error: { type: anthropicErrorType(mapped.status), message: mapped.body.error.message } };
}

export const anthropicErrors: ErrorDialect = {
  owns: (pathname) => pathname === "/v1/messages" || pathname.startsWith("/v1/messages/"),
  body: anthropicBody,
};

/** A stream has no end marker; a failure after output began is an `error` event with the same body. */
export const anthropicSse: StreamFormat = sseFormat((err) => ({ event: "error", data: anthropicBody(mapError(err)) }), null);

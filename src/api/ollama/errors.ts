// Ollama's error shape, `{"error": "..."}`, for every path it owns; status codes stay those of
// src/api/errors.ts (Ollama's are the same: 400, 404, 500, plus 401/403/413/503/504 where LMX has them).
import { ModelNotFoundError, NotFoundError } from "../../errors.ts";
import { type ErrorDialect, mapError } from "../errors.ts";

export const ollamaErrors: ErrorDialect = {
  owns: (pathname) => pathname === "/" || pathname === "/api" || pathname.startsWith("/api/"),
  body: (mapped) => ({ error: mapped.body.error.message }),
};

/** An unknown model as Ollama words it (clients match on "not found"), under the name the client used. */
export function ollamaError(err: unknown, model: string): unknown {
  return err instanceof ModelNotFoundError ? new NotFoundError(`model "${model}" not found, try pulling it first`) : err;
}

/** The line that ends an NDJSON stream that failed after it started. */
export function errorLine(err: unknown): string {
  return JSON.stringify({ error: mapError(err).body.error.message }) + "\n";
}

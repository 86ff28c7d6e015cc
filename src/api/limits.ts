// Bounds on what one request may make the server do before a handler sees it: body size, JSON
// nesting, and the size and shape of JSON schemas that become grammars. Each is checked in a single
// linear pass, so refusing a hostile request costs about as much as reading it.
import { InvalidRequestError, LmxError } from "../errors.ts";

/** Deeper JSON than this is refused before parsing; JSON.parse and the validators recurse. */
export const MAX_JSON_DEPTH = 64;

/** JSON schemas turned into grammars (response_format, tool parameters): node-llama-cpp builds them synchronously. */
export const SCHEMA_LIMITS = { depth: 16, nodes: 2_000, enumValues: 256, bytes: 64 * 1024 } as const;

const JSON_SCHEMA_TYPES = new Set(["string", "number", "integer", "boolean", "object", "array", "null"]);

export class BodyTooLargeError extends LmxError {
  constructor(limit: number) {
    super(`request body is larger than ${limit} bytes (the server's --max-body-size)`, 413, "invalid_request_error", "request_too_large");
  }
}

/** Refuses a declared Content-Length over the limit before a byte of the body is read. */
export function checkContentLength(request: Request, limit: number): void {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw new BodyTooLargeError(limit);
}

/**
 * Reads a JSON body, counting bytes as they arrive (a chunked body declares no length), refusing it
 * once over `limit`, and refusing nesting deeper than MAX_JSON_DEPTH before JSON.parse sees it.
 */
export async function readJsonBody(request: Request, limit: number): Promise<unknown> {
  checkContentLength(request, limit);
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => undefined);
        throw new BodyTooLargeError(limit);
      }
      chunks.push(value);
    }
  }
  const text = Buffer.concat(chunks, size).toString("utf8");
  checkJsonDepth(text, MAX_JSON_DEPTH);
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidRequestError("request body is not valid JSON", null, "invalid_json");
  }
}

/** Nesting depth of JSON text, by bracket counting outside strings; stops at the first level past `max`. */
export function checkJsonDepth(text: string, max: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > max) throw new InvalidRequestError(`request body is nested deeper than ${max} levels`, null, "json_too_deep");
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

/**
 * A JSON schema a grammar will be built from: within SCHEMA_LIMITS and well-formed where the
 * grammar builder would otherwise silently produce nothing (an unknown `type` makes the model emit
 * `null`). The error names the offending field under `param`.
 */
export function checkJsonSchema(schema: unknown, param: string): void {
  if (!isObject(schema)) throw new InvalidRequestError(`${param} must be a JSON schema object`, param, "invalid_schema");
  if (JSON.stringify(schema).length > SCHEMA_LIMITS.bytes) {
    throw new InvalidRequestError(`${param} is larger than ${SCHEMA_LIMITS.bytes} bytes`, param, "schema_too_large");
  }
  let nodes = 0;
  const visit = (node: unknown, path: string, depth: number): void => {
    if (typeof node === "boolean") return;
    if (!isObject(node)) throw new InvalidRequestError(`${path} must be a schema object`, path, "invalid_schema");
    if (depth > SCHEMA_LIMITS.depth) throw new InvalidRequestError(`${param} is nested deeper than ${SCHEMA_LIMITS.depth} levels`, path, "schema_too_large");
    if (++nodes > SCHEMA_LIMITS.nodes) throw new InvalidRequestError(`${param} has more than ${SCHEMA_LIMITS.nodes} sub-schemas`, param, "schema_too_large");
    const type = node.type;
    if (type !== undefined) {
      const types = Array.isArray(type) ? type : [type];
      for (const t of types) {
        if (typeof t !== "string" || !JSON_SCHEMA_TYPES.has(t)) {
          throw new InvalidRequestError(`${path}.type: '${String(t)}' is not a JSON schema type (${[...JSON_SCHEMA_TYPES].join(", ")})`, `${path}.type`, "invalid_schema");
        }
      }
    }
    for (const key of ["enum", "required"] as const) {
      const list = node[key];
      if (list === undefined) continue;
      if (!Array.isArray(list)) throw new InvalidRequestError(`${path}.${key} must be an array`, `${path}.${key}`, "invalid_schema");
      if (list.length > SCHEMA_LIMITS.enumValues) {
        throw new InvalidRequestError(`${path}.${key} has ${list.length} values; at most ${SCHEMA_LIMITS.enumValues} are allowed`, `${path}.${key}`, "schema_too_large");
      }
    }
    for (const key of ["properties", "$defs", "definitions", "patternProperties"] as const) {
      const map = node[key];
      if (map === undefined) continue;
      if (!isObject(map)) throw new InvalidRequestError(`${path}.${key} must be an object`, `${path}.${key}`, "invalid_schema");
      for (const [name, sub] of Object.entries(map)) visit(sub, `${path}.${key}.${name}`, depth + 1);
    }
    for (const key of ["items", "additionalProperties", "not", "contains"] as const) {
      const sub = node[key];
      if (sub === undefined) continue;
      if (Array.isArray(sub)) sub.forEach((s, i) => visit(s, `${path}.${key}[${i}]`, depth + 1));
      else visit(sub, `${path}.${key}`, depth + 1);
    }
    for (const key of ["anyOf", "oneOf", "allOf", "prefixItems"] as const) {
      const list = node[key];
      if (list === undefined) continue;
      if (!Array.isArray(list)) throw new InvalidRequestError(`${path}.${key} must be an array`, `${path}.${key}`, "invalid_schema");
      list.forEach((s, i) => visit(s, `${path}.${key}[${i}]`, depth + 1));
    }
  };
  visit(schema, param, 0);
}

interface SchemaCarrier {
  response_format?: { type: string; json_schema?: { schema?: unknown } } | null;
  tools?: { function: { parameters?: unknown } }[] | null;
}

/** Every JSON schema of a chat request that becomes a grammar. */
export function checkRequestSchemas(body: SchemaCarrier): void {
  const rf = body.response_format;
  if (rf?.type === "json_schema" && rf.json_schema?.schema !== undefined) checkJsonSchema(rf.json_schema.schema, "response_format.json_schema.schema");
  body.tools?.forEach((t, i) => {
    if (t.function.parameters !== undefined) checkJsonSchema(t.function.parameters, `tools[${i}].function.parameters`);
  });
}

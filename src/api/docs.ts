// The API reference: Scalar's page and script served from LMX itself (embedded in the executable,
// no CDN and no web fonts, so it works offline) and /docs/json generated from the routes' schemas.
import { toOpenAPISchema } from "@elysiajs/openapi";
import { toJsonSchema } from "@valibot/to-json-schema";
import { type AnyElysia, Elysia } from "elysia";
import scalarScript from "../../node_modules/@scalar/api-reference/dist/browser/standalone.js" with { type: "file" };
import { VERSION } from "../version.ts";

const PAGE_PATH = "/docs";
const SPEC_PATH = "/docs/json";
const SCRIPT_PATH = "/docs/scalar.js";
/** Open without a key: a browser navigating to the page cannot send a bearer token. */
export const DOCS_PATHS: ReadonlySet<string> = new Set([PAGE_PATH, SPEC_PATH, SCRIPT_PATH]);

// Telemetry off too: the page must not reach any host but this server.
const SCALAR_CONFIG = { url: SPEC_PATH, withDefaultFonts: false, telemetry: false };

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LMX API reference</title>
</head>
<body>
<div id="app"></div>
<script src="${SCRIPT_PATH}"></script>
<script>Scalar.createApiReference("#app", ${JSON.stringify(SCALAR_CONFIG)});</script>
</body>
</html>
`;

// A rule JSON Schema cannot express (a transform, a custom check) is left out of the docs, not
// allowed to drop the whole request body from them; requests are still validated by it.
const vendors = { valibot: (schema: Parameters<typeof toJsonSchema>[0]) => toJsonSchema(schema, { errorMode: "ignore" }) };

type Operation = Record<string, unknown> & { parameters?: unknown[] };
type PathItem = Record<string, Operation>;

interface WildcardDoc {
  param: string;
  description: string;
  /** The paths clients call, by method. */
  methods: Record<string, string[]>;
}

/**
 * Routes whose parameter may hold slashes (model ids are org/repo, route names may too) are `*`
 * routes in the router; the docs show them as the paths clients call, with a named parameter.
 */
const WILDCARDS: Record<string, WildcardDoc> = {
  "/v1/models/*": { param: "model", description: "Model id or alias; may contain '/'", methods: { get: ["/v1/models/{model}"] } },
  "/admin/v1/models/*": {
    param: "id",
    description: "Model id or alias; may contain '/'",
    methods: {
      get: ["/admin/v1/models/{id}"],
      patch: ["/admin/v1/models/{id}"],
      delete: ["/admin/v1/models/{id}"],
      post: ["/admin/v1/models/{id}/load", "/admin/v1/models/{id}/unload", "/admin/v1/models/{id}/probe"],
    },
  },
  "/admin/v1/routes/*": {
    param: "name",
    description: "Requested model name; may contain '/' and the wildcard '*' (percent-encode as needed)",
    methods: { put: ["/admin/v1/routes/{name}"], delete: ["/admin/v1/routes/{name}"] },
  },
};

const operationId = (method: string, path: string): string =>
  method + path.split("/").filter(Boolean).map((s) => s.replace(/[{}]/g, "")).map((s) => s.charAt(0).toUpperCase() + s.slice(1)).join("");

/** Replaces each `*` path by the paths of WILDCARDS; one without an entry is left for the tests to catch. */
export function expandWildcards(paths: Record<string, PathItem>): Record<string, PathItem> {
  const out: Record<string, PathItem> = {};
  for (const [path, item] of Object.entries(paths)) {
    const doc = WILDCARDS[path];
    if (!doc) {
      out[path] = { ...out[path], ...item };
      continue;
    }
    for (const [method, operation] of Object.entries(item)) {
      for (const target of doc.methods[method] ?? [path]) {
        const parameters = [{ name: doc.param, in: "path", required: true, description: doc.description, schema: { type: "string" } }, ...(operation.parameters ?? [])];
        out[target] = { ...out[target], [method]: { ...operation, operationId: operationId(method, target), parameters } };
      }
    }
  }
  return out;
}

/** `/docs`, `/docs/scalar.js` and `/docs/json` for every route of `app` (read on first request, once all are registered). */
export function docsRoutes(app: () => AnyElysia) {
  let spec: unknown;
  return new Elysia()
    .get(PAGE_PATH, () => new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } }), { detail: { hide: true } })
    .get(SCRIPT_PATH, () => new Response(Bun.file(scalarScript), {
      headers: { "content-type": "application/javascript; charset=utf-8", "cache-control": "public, max-age=86400" },
    }), { detail: { hide: true } })
    .get(SPEC_PATH, () => {
      if (spec) return spec;
      const { paths, components } = toOpenAPISchema(app(), undefined, undefined, vendors);
      spec = {
        openapi: "3.1.2",
        info: { title: "LMX API", version: VERSION, description: "OpenAI-compatible local LLM server. Errors use OpenAI's {error: {message, type, param, code}} shape." },
        paths: expandWildcards(paths as Record<string, PathItem>),
        components,
      };
      return spec;
    }, { detail: { hide: true } });
}

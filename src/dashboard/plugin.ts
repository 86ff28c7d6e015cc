// The web dashboard: one page at `/` for browsers and its script. Both are open without a key (a
// browser navigating cannot send a bearer token); every call the page makes goes to the public
// admin and inference APIs with the key the user enters, so the API's auth still guards all data.
import { Elysia } from "elysia";
import { dashboardScript } from "./bundle.ts";
import { DASHBOARD_CSS } from "./style.ts";

export const DASHBOARD_SCRIPT_PATH = "/dashboard/app.js";

// Everything comes from this server: a CSP makes any other host a refused request, not a leak.
const HEADERS = {
  "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LMX</title>
<link rel="icon" href="data:,">
<style>${DASHBOARD_CSS}</style>
</head>
<body>
<div id="app"></div>
<script type="module" src="${DASHBOARD_SCRIPT_PATH}"></script>
</body>
</html>
`;

/**
 * `GET /` is Ollama's liveness probe ("Ollama is running") for every client but a browser: a
 * navigation's Accept lists text/html, which no Ollama client or health check sends.
 */
export function wantsDashboard(request: Request): boolean {
  if (request.method !== "GET") return false;
  if (new URL(request.url).pathname !== "/") return false;
  return (request.headers.get("accept") ?? "").toLowerCase().includes("text/html");
}

export function dashboardPage(): Response {
  return new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8", ...HEADERS } });
}

/** The dashboard's script (the page itself is answered on `/` by the Ollama adapter's negotiation). */
export function dashboardRoutes() {
  // A bundle that cannot be built or found is a 500 with its reason, logged by the app's error mapping.
  return new Elysia().get(DASHBOARD_SCRIPT_PATH, async () =>
    new Response(await dashboardScript(), { headers: { "content-type": "application/javascript; charset=utf-8", ...HEADERS } }), { detail: { hide: true } });
}

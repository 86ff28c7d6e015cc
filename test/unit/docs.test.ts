// /docs works offline and without a key: the page, its embedded Scalar script and /docs/json
// listing every API's routes with named path parameters.
import { describe, expect, spyOn, test } from "bun:test";
import { fakeApp } from "../fakes/fake-app.ts";

type Spec = { paths: Record<string, Record<string, { operationId?: string; parameters?: Array<{ name: string; in: string }> }>> };

/** Every URL the page names: src/href attributes and CSS url(...). */
function urlsIn(html: string): string[] {
  const attrs = [...html.matchAll(/\b(?:src|href)\s*=\s*["']?([^"'\s>]+)/gi)].map((m) => m[1]!);
  const css = [...html.matchAll(/url\(\s*["']?([^"')\s]+)/gi)].map((m) => m[1]!);
  return [...attrs, ...css];
}

describe("/docs", () => {
  test("the page names only same-origin URLs and turns Scalar's web fonts off", async () => {
    await using f = fakeApp([]);
    const res = await f.request("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const html = await res.text();
    const urls = urlsIn(html);
    expect(urls).toContain("/docs/scalar.js");
    for (const url of urls) expect(url).not.toMatch(/^(https?:)?\/\//i);
    expect(html).not.toMatch(/https?:\/\//i);
    expect(html).toContain('"withDefaultFonts":false');
    expect(html).toContain('"url":"/docs/json"');
  });

  test("the script is Scalar's standalone bundle, served from LMX with a cache header", async () => {
    await using f = fakeApp([]);
    const res = await f.request("/docs/scalar.js");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/javascript");
    expect(res.headers.get("cache-control")).toContain("max-age");
    const body = await res.text();
    expect(body.length).toBeGreaterThan(1_000_000);
    expect(body).toContain("createApiReference");
  });

  test("page, script and spec open without a key when keys are on; other routes still need one", async () => {
    await using f = fakeApp([]);
    f.keys.create("admin");
    for (const path of ["/docs", "/docs/scalar.js", "/docs/json"]) expect({ path, status: (await f.request(path)).status }).toEqual({ path, status: 200 });
    for (const path of ["/v1/models", "/admin/v1/models", "/docs/other", "/metrics"]) expect({ path, status: (await f.request(path)).status }).toEqual({ path, status: 401 });
  });

  test("/docs/json lists every API's routes with named path parameters and no wildcard", async () => {
    await using f = fakeApp([]);
    const warn = spyOn(console, "warn");
    const log = spyOn(console, "log");
    try {
      const doc = (await (await f.request("/docs/json")).json()) as Spec;
      expect(warn).not.toHaveBeenCalled();
      expect(log).not.toHaveBeenCalled();
      const has = (path: string, method: string) => expect({ path, method, found: doc.paths[path]?.[method] !== undefined }).toEqual({ path, method, found: true });
      has("/v1/chat/completions", "post");
      has("/v1/completions", "post");
      has("/v1/embeddings", "post");
      has("/v1/models", "get");
      has("/v1/responses", "post");
      has("/v1/messages", "post");
      has("/api/chat", "post");
      has("/api/tags", "get");
      has("/admin/v1/models", "get");
      for (const action of ["load", "unload", "probe"]) has(`/admin/v1/models/{id}/${action}`, "post");
      for (const method of ["get", "patch", "delete"]) has("/admin/v1/models/{id}", method);
      for (const method of ["put", "delete"]) has("/admin/v1/routes/{name}", method);
      has("/v1/models/{model}", "get");
      for (const path of Object.keys(doc.paths)) expect(path).not.toContain("*");
      // Each {param} in a path is declared as a path parameter, and operation ids stay unique.
      const ids = new Set<string>();
      for (const [path, item] of Object.entries(doc.paths)) {
        for (const [method, op] of Object.entries(item)) {
          for (const [, name] of path.matchAll(/\{([^}]+)\}/g)) {
            expect({ path, method, param: op.parameters?.some((p) => p.in === "path" && p.name === name) }).toEqual({ path, method, param: true });
          }
          expect(ids.has(op.operationId ?? "")).toBe(false);
          ids.add(op.operationId ?? "");
        }
      }
      for (const path of ["/docs", "/docs/json", "/docs/scalar.js"]) expect(doc.paths[path]).toBeUndefined();
    } finally {
      warn.mockRestore();
      log.mockRestore();
    }
  });
});

import { Elysia } from "elysia";
import type { RouteTable } from "../../models/routes.ts";
import { RouteBody } from "./schemas.ts";

const routeJson = (r: { name: string; model: string; source: string }) => ({ name: r.name, model: r.model, source: r.source });

/**
 * `/admin/v1/routes`: requested model names mapped to local models, on every API. Names may hold
 * `*` and `/`, so the name is the rest of the path (percent-encoded by clients as needed).
 */
export function adminRouteRoutes(deps: { routes: RouteTable }) {
  return new Elysia({ prefix: "/admin/v1" })
    .get("/routes", () => ({ object: "list", data: deps.routes.list().map(routeJson) }), {
      detail: { summary: "Model-name routes in force (configured and set here), in the order they are tried", tags: ["Admin"] },
    })
    .put("/routes/*", ({ params, body }) => routeJson(deps.routes.set(decodeURIComponent(params["*"]), body.model)), {
      body: RouteBody,
      detail: { summary: "Route a model name (`*` a wildcard) to a model; kept across restarts", tags: ["Admin"] },
    })
    .delete("/routes/*", ({ params }) => {
      const name = decodeURIComponent(params["*"]);
      deps.routes.remove(name);
      return { name, deleted: true };
    }, { detail: { summary: "Delete a route set through this API", tags: ["Admin"] } });
}

import { Elysia } from "elysia";
import type { KeyStore } from "../../auth/keys.ts";
import { KeyBody } from "./schemas.ts";

/** `/admin/v1/keys`: list, create (the key is shown once) and revoke API keys. */
export function adminKeyRoutes(deps: { keys: KeyStore }) {
  return new Elysia({ prefix: "/admin/v1" })
    .get("/keys", () => ({ object: "list", data: deps.keys.list() }), { detail: { summary: "API keys (never the keys themselves)", tags: ["Admin"] } })
    .post("/keys", ({ body }) => {
      const { key, info, admin } = deps.keys.create(body.scope, body.name);
      if (admin) {
        return { ...info, key, admin_key: { ...admin.info, key: admin.key },
          note: "This first key turns authentication on, so an admin key was created with it for the /admin routes. Store both now: they are not shown again." };
      }
      return { ...info, key, note: "Store this key now: it is not shown again." };
    }, { body: KeyBody, detail: { summary: "Create an API key (shown once)", tags: ["Admin"] } })
    .delete("/keys/:ref", ({ params }) => deps.keys.revoke(params.ref), { detail: { summary: "Revoke a key by id, name or prefix", tags: ["Admin"] } });
}

import { Elysia } from "elysia";
import * as v from "valibot";
import type { PeerStatus } from "../../peers/health.ts";
import { keyDescription, type Peer } from "../../peers/registry.ts";
import type { PeerService } from "../../peers/service.ts";
import { InvalidRequestError, NotFoundError } from "../../errors.ts";

/** POST /admin/v1/peers. `api_key` may be `env:VAR` (read from the server's environment). */
export const PeerBody = v.object({
  name: v.pipe(v.string(), v.minLength(1), v.maxLength(64)),
  url: v.pipe(v.string(), v.minLength(1), v.maxLength(2048)),
  api_key: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(4096))),
  /** The server reads the key from this environment variable (same as api_key "env:VAR"). */
  api_key_env: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(128))),
});

/** A peer as the admin API shows it: where its key comes from, never the key. */
export function peerJson(peer: Peer, status: PeerStatus | undefined) {
  const { hasKey, keyEnv } = keyDescription(peer);
  return {
    name: peer.name,
    url: peer.url,
    source: peer.source,
    state: status?.state ?? "down",
    latency_ms: status?.latencyMs ?? null,
    last_error: status?.lastError ?? null,
    models: status?.models ?? [],
    checked_at: status?.checkedAt ? new Date(status.checkedAt).toISOString() : null,
    has_api_key: hasKey,
    api_key_env: keyEnv,
  };
}

/** `/admin/v1/peers`: the peers whose models this server lists and proxies, with their health. */
export function adminPeerRoutes(deps: { peers?: PeerService }) {
  const peers = () => {
    if (!deps.peers) throw new NotFoundError("this server has no peers service");
    return deps.peers;
  };
  const json = (p: Peer) => peerJson(p, peers().health.get(p.name));
  return new Elysia({ prefix: "/admin/v1" })
    .get("/peers", () => ({ object: "list", data: peers().registry.list().map(json) }), {
      detail: { summary: "Peers (other LMX or OpenAI-compatible servers) with their health and models", tags: ["Admin"] },
    })
    .post("/peers", async ({ body }) => {
      if (body.api_key !== undefined && body.api_key_env !== undefined) throw new InvalidRequestError("give api_key or api_key_env, not both", "api_key_env");
      const apiKey = body.api_key_env !== undefined ? `env:${body.api_key_env}` : body.api_key;
      const peer = peers().registry.add({ name: body.name, url: body.url, ...(apiKey !== undefined ? { apiKey } : {}) });
      // Answered once the first poll is in, so the caller sees whether the peer answers.
      await peers().health.poll(peer);
      return json(peer);
    }, {
      body: PeerBody,
      detail: { summary: "Add or replace a peer; kept across restarts. Its key is never shown back", tags: ["Admin"] },
    })
    .delete("/peers/:name", ({ params }) => {
      const name = decodeURIComponent(params.name);
      peers().registry.remove(name);
      return { name, deleted: true };
    }, { detail: { summary: "Remove a peer added through this API", tags: ["Admin"] } });
}

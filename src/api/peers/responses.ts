// Stored responses a peer holds: GET and DELETE /v1/responses/{id}, and GET of its input items,
// go to the peer that answered (and stored) the response. The local routes answer every other id.
import { PeerError } from "../../peers/errors.ts";
import { NODE_HEADER } from "../../peers/health.ts";
import type { PeerService } from "../../peers/service.ts";

const STORED = /^\/v1\/responses\/([^/]+)(\/input_items)?$/;

type HookSet = { headers: Record<string, string | number>; status?: number | string };

/** The peer's answer for a response it holds, or undefined for the local routes to answer. */
export async function storedResponseForwarding(peers: PeerService, request: Request, path: string, set: HookSet): Promise<Response | undefined> {
  const m = STORED.exec(path);
  const method = request.method;
  if (!m || (method !== "GET" && method !== "DELETE") || (m[2] && method !== "GET")) return undefined;
  const id = decodeURIComponent(m[1]!);
  const peer = peers.holder(id);
  if (!peer) return undefined;
  try {
    const step = await peers.call(peer, `response '${id}'`, { api: "openai.responses.stored", method, path: path + new URL(request.url).search, signal: request.signal });
    if (method === "DELETE" && step.status < 300) peers.forget(id);
    set.headers[NODE_HEADER] = peer;
    set.status = step.status;
    return new Response(step.body, { status: step.status, headers: { ...step.headers, [NODE_HEADER]: peer } });
  } catch (err) {
    if (err instanceof PeerError) {
      // The peer answered, so the answer names it.
      set.headers[NODE_HEADER] = peer;
      // It no longer has the response (deleted there, or evicted by its own bounds): neither does this server.
      if (err.status === 404) peers.forget(id);
    }
    throw err;
  }
}

// Ollama's model details and loaded models for peers' models. Another LMX speaks Ollama's API, so
// /api/show for its model is its own answer, passed on, and its loaded models join /api/ps; a peer
// that only speaks OpenAI's API has no such details to give. What a peer lists is another party's
// data: each entry is rebuilt from known fields, each bounded.
import { LmxError } from "../../errors.ts";
import { NODE_HEADER } from "../../peers/health.ts";
import type { Target } from "../../peers/naming.ts";
import type { PeerService } from "../../peers/service.ts";

/** Most loaded models taken from one peer's /api/ps. */
const MAX_LOADED = 100;
const MAX_TEXT = 200;

type HookSet = { headers: Record<string, string | number>; status?: number | string };
type Entry = Record<string, unknown>;

const text = (x: unknown, fallback = ""): string => (typeof x === "string" && x.length <= MAX_TEXT ? x : fallback);
const count = (x: unknown): number => (typeof x === "number" && Number.isFinite(x) && x >= 0 ? Math.floor(x) : 0);

/** The peer's /api/show answer for its model, as it sent it. */
export async function showOnPeer(peers: PeerService, target: Extract<Target, { kind: "peer" }>, name: string, body: Entry, signal: AbortSignal, set: HookSet): Promise<Response> {
  const up = peers.health.get(target.peer)?.state === "up";
  if (up && !peers.isLmx(target.peer)) {
    throw new LmxError(`model "${name}" is served by peer ${target.peer}, which is not an LMX server: its details are not available through Ollama's API here`, 501, "invalid_request_error", "not_implemented", "model");
  }
  // The peer's own id, in the field current Ollama clients use.
  const forwarded: Entry = { ...body, model: target.model };
  delete forwarded.name;
  const step = await peers.call(target.peer, `model "${name}"`, { api: "ollama.show", path: "/api/show", body: forwarded, signal, headers: { accept: "application/json" } });
  set.headers[NODE_HEADER] = step.node;
  set.status = step.status;
  return new Response(step.body, { status: step.status, headers: { ...step.headers, [NODE_HEADER]: step.node } });
}

function details(x: unknown) {
  const d = typeof x === "object" && x !== null ? x as Entry : {};
  const families = Array.isArray(d.families) ? d.families.slice(0, 8).filter((f): f is string => typeof f === "string" && f.length <= MAX_TEXT) : null;
  return {
    parent_model: text(d.parent_model), format: text(d.format), family: text(d.family), families,
    parameter_size: text(d.parameter_size), quantization_level: text(d.quantization_level),
  };
}

/**
 * The models loaded on LMX peers that are up, each under the id that addresses it from here and
 * marked with its node. Each peer is asked for its own models only (`?node=local`): two LMX
 * servers that name each other as peers would otherwise ask each other in a circle.
 */
export async function loadedOnPeers(peers: PeerService, localIds: ReadonlySet<string>, signal: AbortSignal): Promise<Entry[]> {
  const answers = await peers.fromLmxPeers("/api/ps?node=local", "ollama.ps", signal);
  const listed = peers.listed(localIds);
  const out: Entry[] = [];
  for (const { peer, body } of answers) {
    const models = (body as { models?: unknown } | null)?.models;
    if (!Array.isArray(models)) continue;
    for (const m of models.slice(0, MAX_LOADED)) {
      if (typeof m !== "object" || m === null) continue;
      const e = m as Entry;
      const model = text(e.model) || text(e.name);
      if (!model) continue;
      const id = listed.find((l) => l.peer === peer && l.model === model)?.id ?? `${peer}/${model}`;
      out.push({
        name: id, model: id, modified_at: text(e.modified_at, "1970-01-01T00:00:00Z"), size: count(e.size), digest: text(e.digest),
        details: details(e.details), expires_at: text(e.expires_at), size_vram: count(e.size_vram), context_length: count(e.context_length),
        remote_model: model, remote_host: peer, node: peer,
      });
    }
  }
  return out;
}

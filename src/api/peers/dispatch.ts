// Which node answers a generation request, on every API that names a model: before the local
// handler runs, a request for a peer's model (or a route's fallback chain) is walked along its
// targets by the peers service, and a peer's answer is passed through as it arrives. A local
// target lets the route's own handler run with the local model's id; should it fail before any
// output with a refusal (429/503: full queue, not enough memory), the app's error hook hands the
// request back here for the next target. Every answer says its node in `x-lmx-node`.
import { Elysia } from "elysia";
import { errorMessage, LmxError } from "../../errors.ts";
import { log } from "../../log.ts";
import { PeerError } from "../../peers/errors.ts";
import { NODE_HEADER } from "../../peers/health.ts";
import type { Target } from "../../peers/naming.ts";
import type { PeerApiLabel } from "../../peers/observer.ts";
import { watchResponseId } from "../../peers/response-id.ts";
import type { PeerService, Step } from "../../peers/service.ts";
import { storedResponseForwarding } from "./responses.ts";

/** The generation routes, on every API, each naming its model in the body's `model`, and the operation each is. */
const DISPATCHED: Readonly<Record<string, PeerApiLabel>> = {
  "/v1/chat/completions": "openai.chat",
  "/v1/completions": "openai.completions",
  "/v1/embeddings": "openai.embeddings",
  "/v1/responses": "openai.responses",
  "/v1/messages": "anthropic.messages",
  "/v1/messages/count_tokens": "anthropic.count_tokens",
  "/api/chat": "ollama.chat",
  "/api/generate": "ollama.generate",
  "/api/embed": "ollama.embed",
  "/api/embeddings": "ollama.embed",
};
export const DISPATCHED_PATHS: ReadonlySet<string> = new Set(Object.keys(DISPATCHED));

/** Client headers a peer needs to read the request as the client meant it. */
const FORWARDED_HEADERS = ["anthropic-version", "anthropic-beta", "openai-beta"];

interface Walk {
  name: string;
  api: PeerApiLabel;
  targets: Target[];
  next: number;
  reasons: string[];
  body: Record<string, unknown>;
  /** The path and query to send to a peer. */
  path: string;
  /** The local model tried last, for the reason its failure is recorded under. */
  local?: string;
}

type HookSet = { headers: Record<string, string | number>; status?: number | string };

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

/** A local failure a fallback chain moves past: the model is there but cannot take the request now. */
function refused(error: unknown): error is LmxError {
  return error instanceof LmxError && (error.status === 429 || error.status === 503);
}

function forwardedHeaders(request: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of FORWARDED_HEADERS) {
    const value = request.headers.get(name);
    if (value !== null && value.length <= 1024) out[name] = value;
  }
  return out;
}

/**
 * The dispatch hooks, and `recover` for the app's error hook. `handle` runs a request through the
 * whole app: a chain whose next target is local after a local one failed goes round once more.
 */
export function peerDispatch(peers: PeerService | undefined, handle: (request: Request) => Promise<Response>) {
  // The body as the client sent it: validation drops fields this server does not know, a peer may.
  const sent = new WeakMap<Request, Record<string, unknown>>();
  const walks = new WeakMap<Request, Walk>();

  const answer = (step: Extract<Step, { kind: "answer" }>, set: HookSet, w: Walk): Response => {
    set.headers[NODE_HEADER] = step.node;
    set.status = step.status;
    let body = step.body;
    // The peer stored the response it answered: reading it later, or continuing it, goes there.
    if (w.api === "openai.responses" && step.status === 200 && w.body.store !== false && body) {
      body = watchResponseId(body, (id) => {
        try {
          peers!.remember(id, step.node);
        } catch (err) {
          log.warn("could not remember which peer stored a response", { id, peer: step.node, error: errorMessage(err) });
        }
      });
    }
    return new Response(body, { status: step.status, headers: { ...step.headers, [NODE_HEADER]: step.node } });
  };

  const walk = async (request: Request, w: Walk, set: HookSet) => {
    const step = await peers!.step(w.name, w.targets, w.next, { api: w.api, path: w.path, body: w.body, signal: request.signal, headers: forwardedHeaders(request) }, w.reasons).catch((err: unknown) => {
      // The peer's own error: it answered, so the answer names it.
      if (err instanceof PeerError) set.headers[NODE_HEADER] = err.peer;
      throw err;
    });
    if (step.kind === "local") {
      w.next = step.next;
      w.local = step.model;
    }
    return step;
  };

  const plugin = new Elysia({ name: "lmx-peer-dispatch" })
    // Answers of this server, errors included, say so; a peer's answer replaces it with the peer's name.
    .onRequest(({ set }) => {
      set.headers[NODE_HEADER] = "local";
    })
    .onTransform({ as: "global" }, ({ request, body, path }) => {
      if (peers && DISPATCHED_PATHS.has(path) && isObject(body)) sent.set(request, { ...body });
    })
    .onBeforeHandle({ as: "global" }, async ({ request, body, path, set }) => {
      const api = DISPATCHED[path];
      if (!api) return peers ? storedResponseForwarding(peers, request, path, set) : undefined;
      const raw = sent.get(request);
      // A request sent round again (recover) already has its walk and its local model.
      if (!peers || !raw || walks.has(request) || typeof raw.model !== "string") return undefined;
      // Only the peer that stored a response can continue it.
      const previous = api === "openai.responses" && typeof raw.previous_response_id === "string" ? peers.holder(raw.previous_response_id) : undefined;
      const targets = previous ? peers.planOn(raw.model, previous, "previous_response_id") : peers.plan(raw.model);
      if (!targets) return undefined;
      // The query goes along (the Anthropic SDK's ?beta=true).
      const w: Walk = { name: raw.model, api, targets, next: 0, reasons: [], body: raw, path: path + new URL(request.url).search };
      const step = await walk(request, w, set);
      if (step.kind === "answer") return answer(step, set, w);
      walks.set(request, w);
      // The handler reads the validated body: it serves the local target under that target's id.
      if (isObject(body)) body.model = step.model;
      return undefined;
    });

  /**
   * After a local target failed: the next target's answer, or the error to answer with (the
   * chain's reasons when it ran out), or undefined when the error is not a chain's business.
   */
  const recover = async (request: Request, error: unknown, set: HookSet): Promise<Response | { error: unknown } | undefined> => {
    const w = walks.get(request);
    if (!w) return undefined;
    walks.delete(request);
    if (!refused(error)) return undefined;
    w.reasons.push(`local model '${w.local}' ${error.message}`);
    peers!.skippedLocal();
    try {
      const step = await walk(request, w, set);
      if (step.kind === "answer") return answer(step, set, w);
      const headers = new Headers(request.headers);
      headers.delete("content-length");
      const again = new Request(request.url, { method: request.method, headers, body: JSON.stringify({ ...w.body, model: step.model }), signal: request.signal });
      walks.set(again, w);
      const res = await handle(again);
      set.status = res.status;
      return res;
    } catch (err) {
      return { error: err };
    }
  };

  return { plugin, recover };
}

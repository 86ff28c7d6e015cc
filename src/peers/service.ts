// The peers service the API adapters call: which node serves a requested model, the peer models
// to list beside local ones, and a request walked along its targets until one answers.
import { LmxError } from "../errors.ts";
import { peerError } from "./errors.ts";
import type { PeerHealth } from "./health.ts";
import { type ListedModel, listPeerModels, type Naming, planTargets, resolveName, type Target } from "./naming.ts";
import { proxy } from "./proxy.ts";
import { peerKey, type PeerRegistry } from "./registry.ts";

/** No target of a request could serve it now: every peer down or refusing, every local target full. */
export class ModelUnavailableError extends LmxError {
  constructor(name: string, reasons: readonly string[], retryAfterSeconds: number) {
    super(`model '${name}' is unavailable now: ${reasons.join("; ")}`, 503, "server_error", "model_unavailable", "model");
    // A down peer is polled again within this long; a client that waits this long sees what changed.
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Loading a large model on a peer takes what it takes; this only bounds a peer that never answers. */
const ADMIN_ANSWER_MS = 15 * 60_000;

export interface PeerServiceOptions {
  env: NodeJS.ProcessEnv;
  firstByteMs: number;
  isLocal(name: string): boolean;
  route(name: string): readonly string[] | undefined;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
}

/** A request to forward: the API path, the body as the client sent it, and headers to pass. */
export interface Forwarded {
  path: string;
  body: Record<string, unknown>;
  signal: AbortSignal;
  headers?: Record<string, string>;
}

export type Step =
  | { kind: "answer"; node: string; status: number; headers: Record<string, string>; body: ReadableStream<Uint8Array> | null }
  /** Serve the request locally with `model`; should that fail before any output, resume at `next`. */
  | { kind: "local"; model: string; next: number };

export class PeerService {
  constructor(readonly registry: PeerRegistry, readonly health: PeerHealth, private readonly options: PeerServiceOptions) {}

  private naming(): Naming {
    const peers = this.health.list().map((s) => ({ name: s.name, available: s.state === "up", models: s.models }));
    return { isLocal: (n) => this.options.isLocal(n), route: (n) => this.options.route(n), peers };
  }

  /** The targets a request for `name` tries, or undefined when only the local server is concerned. */
  plan(name: string): Target[] | undefined {
    return planTargets(name, this.naming());
  }

  /** Peer models under the ids a request may use; `localIds` are this server's own. */
  listed(localIds: ReadonlySet<string>): ListedModel[] {
    return listPeerModels(localIds, this.naming().peers);
  }

  /**
   * A model action (load, unload) for a peer's model, sent to that peer's admin API with the key
   * this server has for it (which must have admin scope there); undefined when `name` is no
   * peer's model.
   */
  async forwardAdmin(name: string, action: "load" | "unload", body: unknown, signal: AbortSignal): Promise<Extract<Step, { kind: "answer" }> | undefined> {
    const t = resolveName(name, this.naming());
    if (t?.kind !== "peer") return undefined;
    const peer = this.registry.get(t.peer)!;
    const status = this.health.get(t.peer);
    if (status?.state !== "up") throw new ModelUnavailableError(name, [`peer ${peer.name} is ${status?.state ?? "down"}${status?.lastError ? ` (${status.lastError})` : ""}`], this.health.pollSeconds);
    const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
    const key = peerKey(peer, this.options.env);
    if (key) headers.authorization = `Bearer ${key}`;
    const path = t.model.split("/").map(encodeURIComponent).join("/");
    const outcome = await proxy({ url: `${peer.url}/admin/v1/models/${path}/${action}`, headers, body: JSON.stringify(body ?? {}), signal, firstByteMs: ADMIN_ANSWER_MS, fetch: this.options.fetch });
    if (outcome.kind === "answer") return { ...outcome, node: peer.name };
    if (outcome.down) this.health.markDown(peer.name, outcome.reason);
    throw new ModelUnavailableError(name, [`peer ${peer.name} ${outcome.reason}${outcome.auth ? "; loading on a peer needs an admin key of that peer" : ""}`], this.health.pollSeconds);
  }

  /**
   * Walks `targets` from `start`: a peer target is forwarded (a down peer is skipped at once), a
   * local one handed back to the caller. `reasons` collects why each skipped target was skipped;
   * when none is left, ModelUnavailableError says them all.
   */
  async step(name: string, targets: readonly Target[], start: number, request: Forwarded, reasons: string[]): Promise<Step> {
    for (let i = start; i < targets.length; i++) {
      const t = targets[i]!;
      if (t.kind === "local") return { kind: "local", model: t.model, next: i + 1 };
      if (t.kind === "missing") {
        reasons.push(`no node serves '${t.name}'`);
        continue;
      }
      const peer = this.registry.get(t.peer);
      const status = this.health.get(t.peer);
      if (!peer || !status) {
        reasons.push(`no peer named '${t.peer}'`);
        continue;
      }
      if (status.state !== "up") {
        reasons.push(`peer ${peer.name} is ${status.state === "auth_error" ? "refusing our API key" : "down"}${status.lastError ? ` (${status.lastError})` : ""}`);
        continue;
      }
      const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream, application/json, application/x-ndjson", ...request.headers };
      const key = peerKey(peer, this.options.env);
      if (key) headers.authorization = `Bearer ${key}`;
      const outcome = await proxy({
        url: peer.url + request.path,
        headers,
        body: JSON.stringify({ ...request.body, model: t.model }),
        signal: request.signal,
        firstByteMs: this.options.firstByteMs,
        fetch: this.options.fetch,
      });
      // An error answer came before any byte reached the client: said again in the caller's API's shape.
      if (outcome.kind === "answer" && outcome.status >= 400) throw await peerError(peer.name, outcome.status, outcome.body);
      if (outcome.kind === "answer") return { ...outcome, node: peer.name };
      reasons.push(`peer ${peer.name} ${outcome.reason}`);
      if (outcome.down) this.health.markDown(peer.name, outcome.reason);
      if (outcome.auth) this.health.markAuthError(peer.name, outcome.reason);
    }
    throw new ModelUnavailableError(name, reasons, this.health.pollSeconds);
  }
}

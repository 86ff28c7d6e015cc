// The peers service the API adapters call: which node serves a requested model, the peer models
// to list beside local ones, and a request walked along its targets until one answers.
import { InvalidRequestError, LmxError, NotFoundError } from "../errors.ts";
import { readBounded } from "./bounded.ts";
import { peerError } from "./errors.ts";
import type { PeerHealth } from "./health.ts";
import type { HeldResponses } from "./held-responses.ts";
import { type ListedModel, listPeerModels, type Naming, planTargets, resolveName, type Target } from "./naming.ts";
import type { PeerApiLabel, PeerObserver, SkipReason } from "./observer.ts";
import { proxy, type ProxyOutcome } from "./proxy.ts";
import { type Peer, peerKey, type PeerRegistry } from "./registry.ts";

/** No target of a request could serve it now: every peer down or refusing, every local target full. */
export class ModelUnavailableError extends LmxError {
  constructor(name: string, reasons: readonly string[], retryAfterSeconds: number) {
    super(`model '${name}' is unavailable now: ${reasons.join("; ")}`, 503, "server_error", "model_unavailable", "model");
    // A down peer is polled again within this long; a client that waits this long sees what changed.
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Something a peer holds (a stored response, a model's details) while that peer cannot answer. */
export class PeerUnavailableError extends LmxError {
  constructor(subject: string, reason: string, retryAfterSeconds: number) {
    super(`${subject} is unavailable now: ${reason}`, 503, "server_error", "peer_unavailable");
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Loading a large model on a peer takes what it takes; this only bounds a peer that never answers. */
const ADMIN_ANSWER_MS = 15 * 60_000;
/** A peer's list of loaded models comes within this, or is left out of /api/ps. */
const PS_ANSWER_MS = 5000;
/** Largest /api/ps answer read from a peer. */
const MAX_PS_BYTES = 1024 * 1024;

export interface PeerServiceOptions {
  env: NodeJS.ProcessEnv;
  firstByteMs: number;
  isLocal(name: string): boolean;
  route(name: string): readonly string[] | undefined;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  /** Told of every forwarded request and every target passed over (the metrics). */
  observer?: PeerObserver;
  /** Which peer stored a response it answered; none kept without it. */
  held?: HeldResponses;
}

/** A request to forward: the API path, the body as the client sent it, and headers to pass. */
export interface Forwarded {
  api: PeerApiLabel;
  /** POST unless given. */
  method?: "GET" | "POST" | "DELETE";
  path: string;
  /** None for GET and DELETE. */
  body?: Record<string, unknown>;
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

  /**
   * The targets of a request that continues a response `peer` stored: only that peer has it, so
   * only its targets are tried.
   */
  planOn(name: string, peer: string, field: string): Target[] {
    const targets = (this.plan(name) ?? []).filter((t) => t.kind === "peer" && t.peer === peer);
    if (targets.length === 0) throw new InvalidRequestError(`${field} names a response stored on peer ${peer}, which does not serve model '${name}': continue it with a model of ${peer}`, field, "invalid_value");
    return targets;
  }

  /** Peer models under the ids a request may use; `localIds` are this server's own. */
  listed(localIds: ReadonlySet<string>): ListedModel[] {
    return listPeerModels(localIds, this.naming().peers);
  }

  /** Whether the peer is another LMX (it speaks Ollama's API and LMX's admin API). */
  isLmx(peer: string): boolean {
    return this.health.get(peer)?.lmx === true;
  }

  /** The peer that stored response `id`, when a peer did. */
  holder(id: string): string | undefined {
    return this.options.held?.holder(id);
  }

  /** A response `peer` answered and stored: later reads of `id` go there. */
  remember(id: string, peer: string): void {
    this.options.held?.remember(id, peer);
  }

  forget(id: string): void {
    this.options.held?.forget(id);
  }

  /** A chain's local target refused (full queue, no memory): the next target takes the request. */
  skippedLocal(): void {
    this.options.observer?.skipped("local", "refused");
  }

  /**
   * One request sent to a peer, with the key this server has for it, observed. A peer found
   * unreachable is marked down at once.
   */
  private async forward(peer: Peer, request: Omit<Forwarded, "body"> & { body?: unknown; firstByteMs: number }): Promise<ProxyOutcome> {
    const headers: Record<string, string> = { accept: "text/event-stream, application/json, application/x-ndjson", ...request.headers };
    if (request.body !== undefined) headers["content-type"] = "application/json";
    const key = peerKey(peer, this.options.env);
    if (key) headers.authorization = `Bearer ${key}`;
    const observation = this.options.observer?.forwarded(peer.name, request.api);
    let outcome: ProxyOutcome;
    try {
      outcome = await proxy({
        url: peer.url + request.path,
        method: request.method,
        headers,
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
        signal: request.signal,
        firstByteMs: request.firstByteMs,
        fetch: this.options.fetch,
        onEnd: (how, status) => observation?.end(how === "ok" && status >= 400 ? status : how),
      });
    } catch (err) {
      // Only the client going away is thrown.
      observation?.end("aborted");
      throw err;
    }
    if (outcome.kind === "answer") {
      observation?.firstByte();
      return outcome;
    }
    const reason: SkipReason = outcome.auth ? "auth_error" : outcome.timedOut ? "first_byte_timeout" : outcome.down ? "down" : "refused";
    this.options.observer?.skipped(peer.name, reason);
    if (outcome.down) this.health.markDown(peer.name, outcome.reason);
    return outcome;
  }

  /** Why a peer that is not up is passed over, said and counted. */
  private notUp(peer: Peer, state: string, lastError: string | null): string {
    this.options.observer?.skipped(peer.name, state === "auth_error" ? "auth_error" : "down");
    return `peer ${peer.name} is ${state === "auth_error" ? "refusing our API key" : "down"}${lastError ? ` (${lastError})` : ""}`;
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
    if (status?.state !== "up") throw new ModelUnavailableError(name, [this.notUp(peer, status?.state ?? "down", status?.lastError ?? null)], this.health.pollSeconds);
    const path = t.model.split("/").map(encodeURIComponent).join("/");
    const outcome = await this.forward(peer, { api: "admin.models", path: `/admin/v1/models/${path}/${action}`, body: body ?? {}, signal, firstByteMs: ADMIN_ANSWER_MS, headers: { accept: "application/json" } });
    if (outcome.kind === "answer") return { ...outcome, node: peer.name };
    throw new ModelUnavailableError(name, [`peer ${peer.name} ${outcome.reason}${outcome.auth ? "; loading on a peer needs an admin key of that peer" : ""}`], this.health.pollSeconds);
  }

  /**
   * One request for something only `peerName` holds (`subject`: a stored response, a model's
   * details): the peer's answer, or its error said again in the caller's API's shape.
   */
  async call(peerName: string, subject: string, request: Forwarded): Promise<Extract<Step, { kind: "answer" }>> {
    const peer = this.registry.get(peerName);
    const status = this.health.get(peerName);
    if (!peer || !status) throw new NotFoundError(`${subject} is on peer ${peerName}, which is no longer a peer of this server`);
    if (status.state !== "up") throw new PeerUnavailableError(subject, this.notUp(peer, status.state, status.lastError), this.health.pollSeconds);
    const outcome = await this.forward(peer, { ...request, firstByteMs: this.options.firstByteMs });
    if (outcome.kind === "skip") {
      if (outcome.auth) this.health.markAuthError(peer.name, outcome.reason);
      throw new PeerUnavailableError(subject, `peer ${peer.name} ${outcome.reason}`, this.health.pollSeconds);
    }
    if (outcome.status >= 400) throw await peerError(peer.name, outcome.status, outcome.body);
    return { ...outcome, node: peer.name };
  }

  /**
   * What each LMX peer that is up answers to `path` (a GET of a small JSON list), in the
   * registry's order; a peer that fails or answers too much is left out.
   */
  async fromLmxPeers(path: string, api: PeerApiLabel, signal: AbortSignal): Promise<{ peer: string; body: unknown }[]> {
    const asked = this.health.list().filter((s) => s.state === "up" && s.lmx);
    const answers = await Promise.all(asked.map(async (s) => {
      const peer = this.registry.get(s.name);
      if (!peer) return undefined;
      const outcome = await this.forward(peer, { api, method: "GET", path, signal, firstByteMs: PS_ANSWER_MS, headers: { accept: "application/json" } });
      if (outcome.kind !== "answer") return undefined;
      // Read to its end (or the bound) whatever the status, so the answer is counted as it ended.
      const text = await readBounded(new Response(outcome.body), MAX_PS_BYTES).catch(() => undefined);
      if (outcome.status !== 200 || text === undefined) return undefined;
      try {
        return { peer: s.name, body: JSON.parse(text) as unknown };
      } catch {
        return undefined;
      }
    }));
    return answers.filter((a) => a !== undefined);
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
        reasons.push(this.notUp(peer, status.state, status.lastError));
        continue;
      }
      const outcome = await this.forward(peer, { ...request, body: { ...request.body, model: t.model }, firstByteMs: this.options.firstByteMs });
      // An error answer came before any byte reached the client: said again in the caller's API's shape.
      if (outcome.kind === "answer" && outcome.status >= 400) throw await peerError(peer.name, outcome.status, outcome.body);
      if (outcome.kind === "answer") return { ...outcome, node: peer.name };
      reasons.push(`peer ${peer.name} ${outcome.reason}`);
      if (outcome.auth) this.health.markAuthError(peer.name, outcome.reason);
    }
    throw new ModelUnavailableError(name, reasons, this.health.pollSeconds);
  }
}

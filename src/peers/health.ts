// Health of the peers: each one's /v1/models is polled on a fixed interval. One failed poll or
// failed connection marks a peer down, a 401/403 auth_error, one good poll up. A peer is another
// party's server: its answer is read within a size bound, its model list within a count and an
// id-length bound, and every poll within a time bound.
import type { EventBus } from "../events/bus.ts";
import { errorMessage } from "../errors.ts";
import { log } from "../log.ts";
import { readBounded } from "./bounded.ts";
import { type Peer, peerKey, type PeerRegistry } from "./registry.ts";

export type PeerState = "up" | "down" | "auth_error";

/** Every answer of an LMX server names its node here ("local" for its own answers). */
export const NODE_HEADER = "x-lmx-node";

export interface PeerStatus {
  name: string;
  url: string;
  state: PeerState;
  /** How long the last successful poll took. */
  latencyMs: number | null;
  lastError: string | null;
  /** Model ids the peer served at its last good poll; kept while it is down. */
  models: string[];
  /** The peer is another LMX (its answers carry x-lmx-node): it speaks Ollama's API and LMX's admin API too. */
  lmx: boolean;
  checkedAt: number | null;
}

/** Largest /v1/models answer read from a peer. */
export const MAX_MODELS_BYTES = 2 * 1024 * 1024;
/** Most models taken from one peer; the rest are ignored. */
export const MAX_PEER_MODELS = 1000;
/** Longest model id taken from a peer; longer ones are ignored. */
export const MAX_MODEL_ID = 200;
/** Longest error text kept from a peer. */
const MAX_ERROR = 300;
/** No poll waits longer than this, whatever the interval. */
const MAX_POLL_MS = 10_000;

const ID = /^[^\s\x00-\x1f\x7f]+$/u;

export interface HealthOptions {
  intervalMs: number;
  env: NodeJS.ProcessEnv;
  events?: Pick<EventBus, "publish">;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
}

type PollResult = { state: "up"; models: string[]; lmx: boolean } | { state: "down" | "auth_error"; error: string };

const clip = (s: string) => (s.length > MAX_ERROR ? s.slice(0, MAX_ERROR) + "…" : s);

/**
 * The model ids in a peer's /v1/models answer. Entries another LMX lists for its own peers
 * (`node` other than "local") are left out: serving them here would proxy through two hops, and
 * two LMX servers that name each other as peers would send a request around in a circle.
 */
export function modelIdsOf(body: unknown): string[] | undefined {
  const data = (body as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) return undefined;
  const out = new Set<string>();
  for (const entry of data) {
    if (out.size >= MAX_PEER_MODELS) break;
    if (typeof entry !== "object" || entry === null) continue;
    const { id, node } = entry as { id?: unknown; node?: unknown };
    if (node !== undefined && node !== "local") continue;
    if (typeof id === "string" && id.length <= MAX_MODEL_ID && ID.test(id)) out.add(id);
  }
  return [...out];
}

export class PeerHealth {
  private readonly statuses = new Map<string, PeerStatus>();
  private readonly polling = new Map<string, Promise<void>>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly unsubscribe: () => void;
  private readonly fetch: (url: string, init: RequestInit) => Promise<Response>;

  constructor(private readonly registry: PeerRegistry, private readonly options: HealthOptions) {
    this.fetch = options.fetch ?? ((url, init) => fetch(url, init));
    this.sync();
    this.unsubscribe = registry.onChange(() => {
      this.sync();
      if (this.timer) void this.pollAll();
    });
  }

  /** Whole seconds until every peer has been polled again (Retry-After for a model that is unavailable now). */
  get pollSeconds(): number {
    return Math.max(1, Math.ceil(this.options.intervalMs / 1000));
  }

  /** Polls every peer now and then every interval; a peer added later is polled at once. */
  start(): void {
    if (this.timer) return;
    void this.pollAll();
    this.timer = setInterval(() => void this.pollAll(), this.options.intervalMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.unsubscribe();
  }

  /** Every peer's status, in the registry's order. */
  list(): PeerStatus[] {
    return this.registry.list().map((p) => this.statuses.get(p.name)!).filter(Boolean);
  }

  get(name: string): PeerStatus | undefined {
    return this.statuses.get(name);
  }

  /** Polls every peer once (a peer whose poll is still running is not polled twice). */
  async pollAll(): Promise<void> {
    await Promise.all(this.registry.list().map((p) => this.poll(p)));
  }

  poll(peer: Peer): Promise<void> {
    const running = this.polling.get(peer.name);
    if (running) return running;
    const done = this.check(peer).then((result) => this.record(peer, result)).finally(() => this.polling.delete(peer.name));
    this.polling.set(peer.name, done);
    return done;
  }

  /** A proxied request could not reach the peer: it is down now, not at the next poll. */
  markDown(name: string, error: string): void {
    const s = this.statuses.get(name);
    if (!s) return;
    this.transition(s, "down", clip(error));
  }

  /** The peer refused our key on a proxied request. */
  markAuthError(name: string, error: string): void {
    const s = this.statuses.get(name);
    if (!s) return;
    this.transition(s, "auth_error", clip(error));
  }

  /** Statuses follow the registry: new peers start down until their first poll, removed ones go. */
  private sync(): void {
    const names = new Set(this.registry.list().map((p) => p.name));
    for (const name of this.statuses.keys()) if (!names.has(name)) this.statuses.delete(name);
    for (const p of this.registry.list()) {
      const s = this.statuses.get(p.name);
      if (s && s.url === p.url) continue;
      this.statuses.set(p.name, { name: p.name, url: p.url, state: "down", latencyMs: null, lastError: "not polled yet", models: [], lmx: false, checkedAt: null });
    }
  }

  private async check(peer: Peer): Promise<PollResult & { ms: number }> {
    const started = performance.now();
    const headers: Record<string, string> = { accept: "application/json" };
    const key = peerKey(peer, this.options.env);
    if (key) headers.authorization = `Bearer ${key}`;
    const ms = () => Math.round(performance.now() - started);
    const timeout = Math.min(this.options.intervalMs, MAX_POLL_MS);
    try {
      const res = await this.fetch(`${peer.url}/v1/models`, { headers, signal: AbortSignal.timeout(timeout), redirect: "error" });
      if (res.status === 401 || res.status === 403) {
        await res.body?.cancel();
        const unset = !key && peer.apiKey?.startsWith("env:") ? ` (${peer.apiKey.slice(4)} is not set in this server's environment)` : "";
        return { state: "auth_error", error: `the peer refused ${key ? "the API key" : "a request without an API key"} (${res.status})${unset}`, ms: ms() };
      }
      if (!res.ok) {
        await res.body?.cancel();
        return { state: "down", error: `GET /v1/models answered ${res.status}`, ms: ms() };
      }
      const text = await readBounded(res, MAX_MODELS_BYTES);
      if (text === undefined) return { state: "down", error: `GET /v1/models answered more than ${MAX_MODELS_BYTES} bytes`, ms: ms() };
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return { state: "down", error: "GET /v1/models did not answer JSON", ms: ms() };
      }
      const models = modelIdsOf(body);
      if (!models) return { state: "down", error: "GET /v1/models answered no model list (data)", ms: ms() };
      return { state: "up", models, lmx: res.headers.has(NODE_HEADER), ms: ms() };
    } catch (err) {
      const timedOut = (err as Error).name === "TimeoutError";
      return { state: "down", error: timedOut ? `GET /v1/models got no answer within ${timeout} ms` : errorMessage(err), ms: ms() };
    }
  }

  private record(peer: Peer, result: PollResult & { ms: number }): void {
    const s = this.statuses.get(peer.name);
    // Removed or replaced while the poll ran.
    if (!s || s.url !== peer.url) return;
    const first = s.checkedAt === null;
    s.checkedAt = Date.now();
    if (result.state === "up") {
      s.models = result.models;
      s.lmx = result.lmx;
      s.latencyMs = result.ms;
      this.transition(s, "up", null, first);
    } else {
      this.transition(s, result.state, clip(result.error), first);
    }
  }

  /** Records the new state; the first poll's outcome and every change are announced. */
  private transition(s: PeerStatus, state: PeerState, error: string | null, first = false): void {
    const before = s.state;
    s.state = state;
    s.lastError = error;
    if (before === state && !first) return;
    if (state === "up") {
      log.info("peer up", { peer: s.name, models: s.models.length, latencyMs: s.latencyMs });
      this.options.events?.publish({ type: "peer.up", peer: s.name, models: s.models.length, latencyMs: s.latencyMs ?? 0 });
    } else {
      log.warn("peer down", { peer: s.name, state, error });
      this.options.events?.publish({ type: "peer.down", peer: s.name, state, error: error ?? "" });
    }
  }
}

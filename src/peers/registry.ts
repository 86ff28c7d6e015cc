// Peers: other LMX or OpenAI-compatible servers whose models this server lists and proxies.
//
// Peers come from the configuration (--peer, LMX_PEERS, config.json "peers"), kept in memory as
// given, and from the admin API, kept in SQLite so they outlive a restart. An admin peer takes
// precedence over a configured one of the same name; deleting it uncovers the configured one.
import { asc, eq } from "drizzle-orm";
import { InvalidRequestError, LmxError, NotFoundError } from "../errors.ts";
import type { Db } from "../store/db.ts";
import { peers } from "../store/schema.ts";

export type PeerSource = "config" | "admin";

export interface Peer {
  name: string;
  /** Base URL, without a trailing slash or /v1: API paths are appended to it. */
  url: string;
  /** The key sent to the peer, or `env:VAR`. Never shown back through any API. */
  apiKey?: string;
  source: PeerSource;
}

export interface PeerSpec {
  name: string;
  url: string;
  apiKey?: string;
}

export const MAX_PEERS = 64;

/** Names address models as NAME/model, so no slash; "local" names this server's own models. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const ENV_VAR = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const MAX_URL = 2048;
const MAX_KEY = 4096;

/** What is wrong with a peer, or undefined. */
export function peerProblem(spec: PeerSpec): string | undefined {
  if (!NAME.test(spec.name)) return `peer name '${spec.name}' must be 1-64 letters, digits and . _ - (no slash), starting with a letter or digit`;
  if (spec.name === "local") return "'local' names this server's own models; pick another peer name";
  if (spec.url.length > MAX_URL) return `a peer URL has at most ${MAX_URL} characters`;
  let url: URL;
  try {
    url = new URL(spec.url);
  } catch {
    return `peer URL '${spec.url}' is not a URL`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return `peer URL '${spec.url}' must be http or https`;
  if (url.username || url.password) return "give the peer's key as its API key, not in the URL";
  if (url.search || url.hash) return `peer URL '${spec.url}' must not have a query or fragment`;
  if (spec.apiKey !== undefined) {
    if (spec.apiKey.length === 0 || spec.apiKey.length > MAX_KEY) return `a peer's API key has 1-${MAX_KEY} characters`;
    if (/[\r\n\0]/.test(spec.apiKey)) return "a peer's API key must not contain line breaks";
    if (spec.apiKey.startsWith("env:") && !ENV_VAR.test(spec.apiKey.slice(4))) return `'${spec.apiKey}' does not name an environment variable`;
  }
  return undefined;
}

/** The base a peer's API paths are appended to: `http://h:1/v1/` and `http://h:1` are the same peer. */
export function baseUrl(url: string): string {
  return url.replace(/\/+$/, "").replace(/\/v1$/, "");
}

/** The key to send to a peer: its own, or read from the environment for `env:VAR`. */
export function peerKey(peer: Peer, env: NodeJS.ProcessEnv): string | undefined {
  if (peer.apiKey === undefined) return undefined;
  if (!peer.apiKey.startsWith("env:")) return peer.apiKey;
  const value = env[peer.apiKey.slice(4)];
  return value ? value : undefined;
}

/** How a peer's key is described to an admin: where it comes from, never the key. */
export function keyDescription(peer: Peer): { hasKey: boolean; keyEnv: string | null } {
  if (peer.apiKey === undefined) return { hasKey: false, keyEnv: null };
  return { hasKey: true, keyEnv: peer.apiKey.startsWith("env:") ? peer.apiKey.slice(4) : null };
}

export class PeerRegistry {
  private all: Peer[] = [];
  private readonly listeners = new Set<() => void>();

  constructor(private readonly configured: readonly PeerSpec[], private readonly db: Db) {
    for (const spec of configured) {
      const problem = peerProblem(spec);
      if (problem) throw new InvalidRequestError(problem, "peers");
    }
    this.rebuild();
  }

  private rebuild(): void {
    const byName = new Map<string, Peer>();
    for (const p of this.configured) byName.set(p.name, { name: p.name, url: baseUrl(p.url), ...(p.apiKey !== undefined ? { apiKey: p.apiKey } : {}), source: "config" });
    for (const r of this.db.select().from(peers).orderBy(asc(peers.name)).all()) {
      byName.set(r.name, { name: r.name, url: r.url, ...(r.apiKey !== null ? { apiKey: r.apiKey } : {}), source: "admin" });
    }
    this.all = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const l of this.listeners) l();
  }

  /** Every peer, by name: the order in which a model id listed by several peers is resolved. */
  list(): readonly Peer[] {
    return this.all;
  }

  get(name: string): Peer | undefined {
    return this.all.find((p) => p.name === name);
  }

  /** Called after every change (the health poller starts and stops polling). */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Adds or replaces an admin peer. */
  add(spec: PeerSpec): Peer {
    const problem = peerProblem(spec);
    if (problem) throw new InvalidRequestError(problem, "name");
    if (!this.get(spec.name) && this.all.length >= MAX_PEERS) throw new InvalidRequestError(`at most ${MAX_PEERS} peers`, "name", "too_many_peers");
    const row = { url: baseUrl(spec.url), apiKey: spec.apiKey ?? null, updatedAt: Date.now() };
    this.db.insert(peers).values({ name: spec.name, ...row }).onConflictDoUpdate({ target: peers.name, set: row }).run();
    this.rebuild();
    return this.get(spec.name)!;
  }

  /** Removes an admin peer; a configured one of the same name is in force again afterwards. */
  remove(name: string): void {
    const stored = this.db.select().from(peers).where(eq(peers.name, name)).get();
    if (!stored) {
      if (this.configured.some((p) => p.name === name)) {
        throw new LmxError(`peer '${name}' comes from the server's configuration (--peer, LMX_PEERS or config.json "peers"); change it there`, 409, "invalid_request_error", "peer_configured");
      }
      throw new NotFoundError(`no peer named '${name}'`);
    }
    this.db.delete(peers).where(eq(peers.name, name)).run();
    this.rebuild();
  }
}

// Which node serves a requested model name, and under which names peer models are listed. The
// listing and the resolution follow one rule, so every listed id addresses the model it lists:
// a local id or alias is the local model; `PEER/id` is that peer's model; any other id is the
// first peer's (by name) that lists it. A peer model whose id clashes with a local one, or with
// an earlier peer's, is listed as `PEER/id`.

export interface PeerModels {
  name: string;
  /** Up, or listed as unavailable. */
  available: boolean;
  models: readonly string[];
}

export type Target =
  | { kind: "local"; model: string }
  | { kind: "peer"; peer: string; model: string }
  /** A chain's target that no node serves now (a peer model whose peer never answered). */
  | { kind: "missing"; name: string };

export interface Naming {
  /** A local model's id or alias. */
  isLocal(name: string): boolean;
  /** A route's targets, in order, when `name` is routed. */
  route(name: string): readonly string[] | undefined;
  peers: readonly PeerModels[];
}

export interface ListedModel {
  /** The id the listing shows and a request may use. */
  id: string;
  peer: string;
  /** The peer's own id for it. */
  model: string;
  available: boolean;
}

export function listPeerModels(localIds: ReadonlySet<string>, peers: readonly PeerModels[]): ListedModel[] {
  const taken = new Set(localIds);
  const out: ListedModel[] = [];
  for (const p of peers) {
    for (const model of p.models) {
      const id = taken.has(model) ? `${p.name}/${model}` : model;
      taken.add(id);
      out.push({ id, peer: p.name, model, available: p.available });
    }
  }
  return out;
}

/** The node that serves one name, or undefined when none does. */
export function resolveName(name: string, naming: Naming): Target | undefined {
  if (naming.isLocal(name)) return { kind: "local", model: name };
  const slash = name.indexOf("/");
  if (slash > 0) {
    const peer = naming.peers.find((p) => p.name === name.slice(0, slash));
    if (peer && slash < name.length - 1) return { kind: "peer", peer: peer.name, model: name.slice(slash + 1) };
  }
  const lister = naming.peers.find((p) => p.models.includes(name));
  return lister ? { kind: "peer", peer: lister.name, model: name } : undefined;
}

/**
 * The targets a request for `name` tries in order, or undefined when it is the local server's
 * business alone (a local model, a route to one local model, or a name nobody serves: the local
 * path answers it, with its 404).
 */
export function planTargets(name: string, naming: Naming): Target[] | undefined {
  if (naming.isLocal(name)) return undefined;
  const chain = naming.route(name);
  if (chain) {
    const targets = chain.map((t): Target => resolveName(t, naming) ?? { kind: "missing", name: t });
    if (targets.length === 1 && targets[0]!.kind !== "peer") return undefined;
    return targets;
  }
  const target = resolveName(name, naming);
  return target?.kind === "peer" ? [target] : undefined;
}

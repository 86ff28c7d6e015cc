// The coordinating node of a model sharded across LMX nodes: it checks every node, gives each its
// rank and the ring's addresses, loads rank 0 itself (which serves the requests), and watches the
// others: a node that stops answering ends the group on every node.
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { LoadSettings, Placement } from "../config/load-settings.ts";
import { errorMessage, InvalidRequestError, LmxError, ModelLoadError } from "../errors.ts";
import { log } from "../log.ts";
import type { ModelStatus, Scheduler } from "../scheduler/scheduler.ts";
import { ipv4Of, localAddressToward } from "./addresses.ts";
import type { GroupMember } from "./member.ts";
import { callNode, type CallResult, type NodeRef } from "./peer-call.ts";

/** Ranks in one group at most (mlx.distributed's ring is meant for a handful of machines). */
export const MAX_NODES = 16;
const PREPARE_MS = 120_000;
/** A rank's load includes reading its shard of the weights; this only bounds a node that never answers. */
const JOIN_MS = 30 * 60_000;
/**
 * How long a node that did not answer when its group ended is told again, once a heartbeat. A
 * frozen node (a sleeping laptop, a stopped process) that comes back would otherwise hold its rank
 * until its lease ran out (30 s after the last heartbeat it read, and a heartbeat still queued
 * from before the freeze renews it), refusing to serve the model meanwhile.
 */
const RETELL_MS = 5 * 60_000;

export interface CoordinatorOptions {
  /** The node a name in `nodes` stands for (a peer LMX with the admin key we hold), or a reason it cannot be used. */
  node(name: string): NodeRef | string;
  /** Load settings in the admin API's wire names, for the nodes' load requests. */
  toWire(settings: LoadSettings): Record<string, unknown>;
  /** Where a model came from (its hub repo and revision), so a node that lacks it can download the same files; undefined for imported models. */
  source(model: string): { repo: string; revision: string | null } | undefined;
  heartbeatMs: number;
  /** Heartbeats in a row a node may miss before the group is ended. */
  misses: number;
  joinTimeoutS: number;
  /** How long a node may take to download a model it lacks, and how often it is asked how far it got. */
  pullTimeoutMs: number;
  pullPollMs: number;
}

interface Group {
  model: string;
  placement: Omit<Placement, "rank">;
  peers: NodeRef[];
  missed: Map<string, number>;
}

export interface GroupInfo {
  group: string;
  model: string;
  nodes: string[];
  hosts: string[];
}

export class Coordinator {
  private readonly groups = new Map<string, Group>();
  /** Ended groups a node has not heard of yet, by group and node name. */
  private readonly untold = new Map<string, { group: string; peer: NodeRef; until: number }>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private ticking = false;

  constructor(
    private readonly scheduler: Pick<Scheduler, "loadModel" | "abandonGroup" | "groupMember" | "checkShardedLoad">,
    private readonly member: Pick<GroupMember, "prepare">,
    private readonly opts: CoordinatorOptions,
  ) {}

  list(): GroupInfo[] {
    return [...this.groups].map(([group, g]) => ({ group, model: g.model, nodes: g.placement.nodes, hosts: g.placement.hosts }));
  }

  /** Loads `model` across `nodes` ("local" and peer names); resolves with rank 0's status once every rank is loaded. */
  async load(model: string, nodes: readonly string[], settings: LoadSettings): Promise<ModelStatus> {
    const ordered = this.order(nodes);
    const peers = ordered.slice(1).map((name) => {
      const ref = this.opts.node(name);
      if (typeof ref === "string") throw new InvalidRequestError(`nodes: ${ref}`, "nodes", "node_unavailable");
      return ref;
    });
    const local = await this.member.prepare(model);
    this.scheduler.checkShardedLoad(local.model, settings);
    const prepare = (p: NodeRef) => callNode(p, "POST", "/admin/v1/distributed/prepare", { model: local.model }, PREPARE_MS);
    const source = this.opts.source(local.model);
    const answers = await Promise.all(peers.map(async (p) => {
      const first = await prepare(p);
      if (first.ok || first.code !== "model_not_found" || !source) return first;
      // A node without the model gets the very files this node has, from the same hub repo and revision.
      const problem = await this.pull(p, source, local.model);
      return problem === undefined ? prepare(p) : { ok: false as const, status: undefined, message: problem };
    }));
    const problems: string[] = [];
    answers.forEach((a, i) => {
      const name = peers[i]!.name;
      if (!a.ok) problems.push(preflightProblem(name, local.model, a));
      else {
        const theirs = (a.body.versions ?? {}) as Record<string, unknown>;
        for (const [pkg, ours] of Object.entries(local.versions)) {
          if (theirs[pkg] !== ours) problems.push(`node ${name} runs ${pkg} ${String(theirs[pkg] ?? "unknown")}, this node ${ours ?? "unknown"} (every node needs the same: 'lmx runtime update mlx' there)`);
        }
        if (typeof a.body.port !== "number") problems.push(`node ${name} did not say which port its rank listens on`);
      }
    });
    if (problems.length) throw new InvalidRequestError(`cannot load ${local.model} across ${ordered.join(", ")}: ${problems.join("; ")}`, "nodes", "distributed_preflight_failed");

    const placement = await this.place(ordered, peers, local.port, answers);
    const group = placement.group;
    log.info("loading a model across nodes", { model: local.model, nodes: ordered, hosts: placement.hosts, group });
    const fail = (why: string) => this.scheduler.abandonGroup(group, why);
    const joins = peers.map(async (p, i) => {
      const r = await callNode(p, "POST", "/admin/v1/distributed/ranks", { model: local.model, ...this.opts.toWire(settings), placement: { ...wirePlacement(placement), rank: i + 1 } }, JOIN_MS);
      // Rank 0 would wait for the missing rank until its join timeout: end it now.
      if (!r.ok) fail(`node ${p.name} could not load its rank: ${r.message}`);
      return r;
    });
    const [mine, ...theirs] = await Promise.allSettled([this.scheduler.loadModel(local.model, settings, { ...placement, rank: 0 }), ...joins]);
    theirs.forEach((r, i) => {
      if (r.status === "fulfilled" && !r.value.ok) problems.push(`node ${peers[i]!.name}: ${r.value.message}`);
      if (r.status === "rejected") problems.push(`node ${peers[i]!.name}: ${errorMessage(r.reason)}`);
    });
    if (mine.status === "rejected" && problems.length === 0) problems.push(`this node: ${errorMessage(mine.reason)}`);
    if (problems.length || mine.status === "rejected") {
      fail("the group could not be loaded");
      await this.tellEnded(group, peers);
      const status = mine.status === "rejected" && mine.reason instanceof LmxError && mine.reason.status < 500 ? mine.reason.status : 503;
      throw new ModelLoadError(`cannot load ${local.model} across ${ordered.join(", ")}: ${problems.join("; ")}`, "distributed_load_failed", status);
    }
    this.groups.set(group, { model: local.model, placement, peers, missed: new Map() });
    this.startTicking();
    return mine.value;
  }

  /** Has node `p` download `source`; a problem in words, or undefined once it has the model. */
  private async pull(p: NodeRef, source: { repo: string; revision: string | null }, model: string): Promise<string | undefined> {
    log.info("a node of a distributed load lacks the model; it downloads it", { node: p.name, repo: source.repo, revision: source.revision });
    const started = await callNode(p, "POST", "/admin/v1/downloads", { model: source.repo, ...(source.revision ? { revision: source.revision } : {}) }, 30_000);
    if (!started.ok) return `has no model '${model}' and cannot download ${source.repo}: ${started.message}`;
    const id = String(started.body.id ?? "");
    const until = Date.now() + this.opts.pullTimeoutMs;
    let lastError = "";
    while (Date.now() < until) {
      const r = await callNode(p, "GET", `/admin/v1/downloads/${encodeURIComponent(id)}`, undefined, 30_000);
      if (r.ok) {
        const state = r.body.state;
        if (state === "done") {
          return r.body.model_id === model ? undefined : `downloaded ${source.repo} as '${String(r.body.model_id)}', not '${model}'`;
        }
        if (state === "failed" || state === "cancelled") return `could not download ${source.repo}: ${String(r.body.error ?? state)}`;
      } else lastError = r.message;
      await Bun.sleep(this.opts.pullPollMs);
    }
    return `did not finish downloading ${source.repo} within ${Math.round(this.opts.pullTimeoutMs / 60_000)} min${lastError ? ` (${lastError})` : ""}`;
  }

  /** The nodes in rank order: this node first (rank 0 serves the requests), then the others as given. */
  private order(nodes: readonly string[]): string[] {
    if (new Set(nodes).size !== nodes.length) throw new InvalidRequestError("nodes: a node is named twice", "nodes");
    if (!nodes.includes("local")) throw new InvalidRequestError("nodes must include 'local': the node that receives the load is rank 0 and serves the model's requests", "nodes");
    if (nodes.length < 2) throw new InvalidRequestError("nodes: name 'local' and at least one peer", "nodes");
    if (nodes.length > MAX_NODES) throw new InvalidRequestError(`nodes: at most ${MAX_NODES}`, "nodes");
    return ["local", ...nodes.filter((n) => n !== "local")];
  }

  private async place(ordered: string[], peers: NodeRef[], localPort: number, answers: CallResult[]): Promise<Omit<Placement, "rank">> {
    const urls = peers.map((p) => new URL(p.url));
    const ips = await Promise.all(urls.map((u) => ipv4Of(u.hostname)));
    const first = urls[0]!;
    let localIp: string;
    try {
      localIp = await localAddressToward(ips[0]!, Number(first.port || (first.protocol === "https:" ? 443 : 80)));
    } catch (err) {
      throw new InvalidRequestError(`cannot tell which address node ${peers[0]!.name} reaches this node by: ${errorMessage(err)}`, "nodes", "node_unavailable");
    }
    const ports = answers.map((a) => (a.ok ? Number(a.body.port) : 0));
    return {
      group: randomUUID(),
      size: ordered.length,
      nodes: ordered,
      hosts: [`${localIp}:${localPort}`, ...ips.map((ip, i) => `${ip}:${ports[i]}`)],
      coordinator: hostname(),
      joinTimeoutS: this.opts.joinTimeoutS,
    };
  }

  private startTicking(): void {
    this.timer ??= setInterval(() => void this.tick(), this.opts.heartbeatMs);
    this.timer.unref?.();
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      await Promise.all([...[...this.groups].map(([group, g]) => this.check(group, g)), this.retell()]);
    } finally {
      this.ticking = false;
    }
  }

  /**
   * Tells `peers` that `group` ended; a node that does not answer is told again at each heartbeat
   * (RETELL_MS at most). `lost`: nodes known not to answer now, only queued.
   */
  private async tellEnded(group: string, peers: readonly NodeRef[], lost: readonly NodeRef[] = []): Promise<void> {
    const results = await Promise.all(peers.map((p) => callNode(p, "DELETE", `/admin/v1/distributed/groups/${group}`, undefined, 10_000)));
    const unanswered = [...lost, ...peers.filter((_, i) => results[i]!.status === undefined)];
    for (const peer of unanswered) this.untold.set(`${group} ${peer.name}`, { group, peer, until: Date.now() + RETELL_MS });
    if (unanswered.length > 0) this.startTicking();
  }

  private async retell(): Promise<void> {
    await Promise.all([...this.untold].map(async ([key, u]) => {
      if (Date.now() > u.until) {
        this.untold.delete(key);
        return;
      }
      const r = await callNode(u.peer, "DELETE", `/admin/v1/distributed/groups/${u.group}`, undefined, Math.max(1000, this.opts.heartbeatMs * 1.5));
      // Any answer, a 404 for a rank it no longer holds included, means it knows.
      if (r.status !== undefined) this.untold.delete(key);
    }));
  }

  private async check(group: string, g: Group): Promise<void> {
    if (!this.scheduler.groupMember(group)) {
      // Rank 0 ended (unloaded, evicted, failed): the others end too, if they have not yet.
      this.groups.delete(group);
      await this.tellEnded(group, g.peers);
      return;
    }
    for (const p of g.peers) {
      const r = await callNode(p, "GET", `/admin/v1/distributed/groups/${group}`, undefined, Math.max(1000, this.opts.heartbeatMs * 1.5));
      if (r.ok) {
        g.missed.set(p.name, 0);
        continue;
      }
      const missed = (g.missed.get(p.name) ?? 0) + 1;
      g.missed.set(p.name, missed);
      if (r.status === 404 || missed >= this.opts.misses) {
        const why = r.status === 404 ? `node ${p.name} no longer holds its rank (its worker ended or failed there)` : `node ${p.name} ${r.message}`;
        log.error("a node of a distributed group is gone; ending the group", { group, model: g.model, node: p.name, reason: r.message });
        this.groups.delete(group);
        this.scheduler.abandonGroup(group, why);
        // The lost node too, once it answers again: it may only have been frozen.
        await this.tellEnded(group, g.peers.filter((o) => o !== p), r.status === 404 ? [] : [p]);
        return;
      }
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/** The placement under the wire's names (join_timeout_s), as /admin/v1/distributed/ranks takes it. */
function wirePlacement(p: Omit<Placement, "rank">) {
  return { group: p.group, size: p.size, nodes: p.nodes, hosts: p.hosts, coordinator: p.coordinator, join_timeout_s: p.joinTimeoutS };
}

function preflightProblem(name: string, model: string, a: Extract<CallResult, { ok: false }>): string {
  if (a.code === "model_not_found") {
    return `node ${name} has no model '${model}', which was imported here (not downloaded), so it cannot be fetched for it: copy the folder there and import it ('lmx import')`;
  }
  if (a.status === 404) return `node ${name} is not an LMX server that can shard models (${a.message})`;
  return `node ${name} ${a.message}`;
}

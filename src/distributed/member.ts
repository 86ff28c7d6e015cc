// A node's side of a distributed group: it checks it can hold a rank, loads the rank when the
// coordinator asks, answers the coordinator's heartbeats, and frees the rank when they stop.
import type { LoadSettings, Placement } from "../config/load-settings.ts";
import { InvalidRequestError, ModelBusyError, NotFoundError } from "../errors.ts";
import { log } from "../log.ts";
import type { ModelStatus, Scheduler } from "../scheduler/scheduler.ts";
import { freePort } from "./addresses.ts";

export interface Readiness {
  model: string;
  /** The port this node's rank will listen on. */
  port: number;
  versions: Record<string, string | null>;
}

export interface RankState {
  group: string;
  model: string;
  rank: number;
  size: number;
  state: string;
}

export class GroupMember {
  /** Groups this node holds a follower rank of, and when their coordinator last asked after them. */
  private readonly leases = new Map<string, { model: string; seen: number }>();
  private readonly sweeper: ReturnType<typeof setInterval>;

  constructor(
    private readonly scheduler: Pick<Scheduler, "get" | "engineFor" | "loadModel" | "groupMember" | "abandonGroup" | "unload">,
    private readonly opts: { leaseMs: number; now?: () => number },
  ) {
    this.sweeper = setInterval(() => void this.sweep(), Math.max(250, Math.floor(opts.leaseMs / 4)));
    this.sweeper.unref?.();
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  /** Whether this node can hold a rank of `model` (it has the model, as MLX, with a working runtime), and the port the rank gets. */
  async prepare(model: string): Promise<Readiness> {
    const status = await this.scheduler.get(model);
    const engine = this.scheduler.engineFor(status.descriptor);
    if (!engine.runtimeVersions) {
      throw new InvalidRequestError(
        `'${status.descriptor.id}' is a ${status.descriptor.format.toUpperCase()} model; only MLX models can be sharded across nodes (serve a GGUF model on one node and reach it as a peer)`,
        "model", "not_shardable");
    }
    return { model: status.descriptor.id, port: await freePort(), versions: await engine.runtimeVersions() };
  }

  /** Loads this node's rank; resolves once every rank of the group has joined and loaded its shard. */
  async join(model: string, settings: LoadSettings, placement: Placement): Promise<ModelStatus> {
    if (placement.rank === 0) throw new InvalidRequestError("rank 0 is the coordinator's own: it loads with nodes in its load request", "placement.rank");
    const current = await this.scheduler.get(model);
    const held = current.options?.distributed;
    if ((current.state === "ready" || current.state === "loading") && held?.group !== placement.group) {
      // Taking it over would cut off whatever this node serves with it now.
      throw new ModelBusyError(held
        ? `'${current.descriptor.id}' is already loaded on this node as rank ${held.rank} of another group (coordinator ${held.coordinator}); unload it there first`
        : `'${current.descriptor.id}' is loaded on this node for its own requests; unload it here first (lmx unload) to make it part of a group`);
    }
    this.leases.set(placement.group, { model, seen: Number.POSITIVE_INFINITY });
    try {
      const status = await this.scheduler.loadModel(model, settings, placement);
      this.leases.set(placement.group, { model: status.descriptor.id, seen: this.now() });
      return status;
    } catch (err) {
      this.leases.delete(placement.group);
      throw err;
    }
  }

  /** The coordinator's heartbeat: renews the rank's lease and says its state. */
  heartbeat(group: string): RankState {
    const member = this.scheduler.groupMember(group);
    if (!member) throw new NotFoundError(`this node holds no rank of distributed group ${group} (it ended, failed or was never loaded here)`);
    const lease = this.leases.get(group);
    if (lease && Number.isFinite(lease.seen)) lease.seen = this.now();
    return { group, model: member.id, rank: member.placement.rank, size: member.placement.size, state: member.state };
  }

  /** Frees this node's rank of `group`; false when it holds none. */
  async leave(group: string, reason = "the coordinator ended the group"): Promise<boolean> {
    this.leases.delete(group);
    const member = this.scheduler.groupMember(group);
    if (!member) return false;
    return this.scheduler.abandonGroup(group, reason) || this.scheduler.unload(member.id);
  }

  private async sweep(): Promise<void> {
    const now = this.now();
    for (const [group, lease] of this.leases) {
      if (!this.scheduler.groupMember(group)) {
        if (Number.isFinite(lease.seen)) this.leases.delete(group);
        continue;
      }
      if (now - lease.seen <= this.opts.leaseMs) continue;
      log.warn("the coordinator of a distributed group stopped asking after it; freeing this node's rank", { group, model: lease.model, silentMs: now - lease.seen });
      await this.leave(group, `its coordinator stopped asking after it for ${Math.round((now - lease.seen) / 1000)} s`);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}

// One rank of an MLX model sharded across nodes with mlx.distributed (ring backend). Every rank's
// worker gets the group's host list in a file (MLX_HOSTFILE) and its rank (MLX_RANK); rank 0 serves
// requests (an ordinary MlxLoadedModel), the others only follow it (FollowerRank below).

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Placement } from "../../config/load-settings.ts";
import { ModelEndedError, NodeLostError, NotLeaderError } from "../../errors.ts";
import type { LoadedModel, MemoryEstimate, ModelDescriptor, ResolvedLoadSettings } from "../types.ts";
import type { SupervisorOptions, WorkerSupervisor } from "./supervisor.ts";

/** The worker's environment and the files it needs for its rank; `dispose` removes the files. */
export function rankSetup(descriptor: ModelDescriptor, p: Placement): { env: Record<string, string>; once: NonNullable<SupervisorOptions["once"]>; dispose: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "lmx-ring-"));
  const hostfile = join(dir, "hosts.json");
  // The ring backend's format: one list of addresses per rank.
  writeFileSync(hostfile, JSON.stringify(p.hosts.map((h) => [h])));
  const nodes = p.nodes.join(", ");
  return {
    env: { MLX_RANK: String(p.rank), MLX_HOSTFILE: hostfile, LMX_GROUP: p.group },
    once: {
      lost: (why) => new NodeLostError(
        `${descriptor.id}, sharded across ${nodes}, stopped on this node (rank ${p.rank}): ${why}. ` +
        `It is unloaded on every node; load it again with --nodes, or the next request loads it on one node where it fits`),
      ended: (message) => new ModelEndedError(`${descriptor.id} (rank ${p.rank} of ${p.size}): ${message}`),
    },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * A rank other than 0: holds its shard of the weights and runs rank 0's steps, but serves no
 * request itself. The scheduler counts its memory and shows it in /admin/v1/ps like any model.
 */
export class FollowerRank implements LoadedModel {
  private unloaded = false;

  constructor(
    private readonly supervisor: WorkerSupervisor,
    readonly descriptor: ModelDescriptor,
    readonly options: ResolvedLoadSettings & { distributed: Placement },
    private readonly estimate: MemoryEstimate,
    private readonly onUnload: () => void,
  ) {}

  get contextLength(): number {
    return this.options.contextLength;
  }

  private refuse(): never {
    const p = this.options.distributed;
    throw new NotLeaderError(`${this.descriptor.id} is loaded on this node as rank ${p.rank} of ${p.size} of a model served by its coordinator; send requests there`);
  }

  countChatTokens(): Promise<number> {
    this.refuse();
  }

  countTokens(): number {
    this.refuse();
  }

  tokenize(): number[] {
    this.refuse();
  }

  detokenize(): string {
    this.refuse();
  }

  generate(): Promise<void> {
    this.refuse();
  }

  embed(): Promise<never> {
    this.refuse();
  }

  logprobs(): Promise<number[]> {
    this.refuse();
  }

  memoryInUse(): MemoryEstimate {
    return this.estimate;
  }

  onFailed(listener: (err: Error) => void): void {
    this.supervisor.onFailed(listener);
  }

  async unload(): Promise<void> {
    if (this.unloaded) return;
    this.unloaded = true;
    this.onUnload();
    await this.supervisor.stop();
  }
}

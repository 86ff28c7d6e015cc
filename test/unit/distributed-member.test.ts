// A node's side of a group (src/distributed/member.ts) against a scripted scheduler: the rank's
// lease, renewed by the coordinator's heartbeats, frees the rank when they stop.

import { describe, expect, test } from "bun:test";
import type { Placement } from "../../src/config/load-settings.ts";
import { GroupMember } from "../../src/distributed/member.ts";
import type { ModelStatus, Scheduler } from "../../src/scheduler/scheduler.ts";

const placement = (rank: number): Placement => ({
  group: "0b1c2d3e-aaaa-bbbb-cccc-000000000001", rank, size: 2, nodes: ["local", "studio"], hosts: ["127.0.0.1:1", "127.0.0.1:2"], coordinator: "laptop", joinTimeoutS: 60,
});

function fakeScheduler() {
  const abandoned: string[] = [];
  let member: { id: string; placement: Placement; state: string } | undefined;
  const s = {
    abandoned,
    loadModel: async (id: string, _settings: unknown, p?: Placement): Promise<ModelStatus> => {
      member = { id, placement: p!, state: "ready" };
      return { descriptor: { id, format: "mlx", path: "/m" }, state: "ready", running: 0, queued: 0 };
    },
    groupMember: (group: string) => (member?.placement.group === group ? member : undefined),
    abandonGroup: (_group: string, reason: string) => {
      abandoned.push(reason);
      member = undefined;
      return true;
    },
    unload: async () => true,
    loadedHere: false,
    get: async (id: string): Promise<ModelStatus> => ({
      descriptor: { id, format: "mlx", path: "/m" }, running: 0, queued: 0,
      state: member || s.loadedHere ? "ready" : "unloaded",
      ...(member ? { options: { contextLength: 1, parallel: 1, threads: 1, distributed: member.placement } } : {}),
    }),
    engineFor: () => { throw new Error("unused"); },
  };
  return s as typeof s & Pick<Scheduler, "get" | "engineFor">;
}

describe("a node's rank of a distributed group", () => {
  test("rank 0 is never joined from outside", async () => {
    const member = new GroupMember(fakeScheduler(), { leaseMs: 60_000 });
    await expect(member.join("m", {}, placement(0))).rejects.toThrow("rank 0 is the coordinator's own");
    member.close();
  });

  test("a model this node serves for itself is not taken over", async () => {
    const s = fakeScheduler();
    s.loadedHere = true;
    const member = new GroupMember(s, { leaseMs: 60_000 });
    await expect(member.join("m", {}, placement(1))).rejects.toThrow("is loaded on this node for its own requests");
    member.close();
  });

  test("heartbeats keep the rank; without them it is freed once the lease runs out", async () => {
    const s = fakeScheduler();
    const member = new GroupMember(s, { leaseMs: 400 });
    await member.join("m", {}, placement(1));
    for (let i = 0; i < 6; i++) {
      await Bun.sleep(150);
      expect(member.heartbeat(placement(1).group)).toMatchObject({ model: "m", rank: 1, size: 2, state: "ready" });
    }
    expect(s.abandoned).toEqual([]);
    await Bun.sleep(900);
    expect(s.abandoned).toHaveLength(1);
    expect(s.abandoned[0]).toMatch(/^its coordinator stopped asking after it for \d+ s$/);
    expect(() => member.heartbeat(placement(1).group)).toThrow("holds no rank");
    member.close();
  });
});

// The coordinator of a model sharded across nodes, against a scripted scheduler and stand-in nodes
// (real HTTP servers on 127.0.0.1 answering the distributed admin routes as the test says).
// The real thing, with two `lmx serve` processes and MLX ranks, is test/distributed.test.ts.

import { afterEach, describe, expect, test } from "bun:test";
import type { LoadSettings, Placement } from "../../src/config/load-settings.ts";
import { Coordinator } from "../../src/distributed/coordinator.ts";
import { InvalidRequestError } from "../../src/errors.ts";
import type { ModelStatus } from "../../src/scheduler/scheduler.ts";

const VERSIONS = { mlx: "0.32.4", "mlx-lm": "0.32.2" };

interface NodeScript {
  /** While it returns a promise, requests reach the node and wait for it before they are handled (a frozen machine). */
  frozen?: () => Promise<void> | undefined;
  prepare?: () => Response;
  ranks?: () => Response | Promise<Response>;
  heartbeat?: () => Response;
}

const servers: { stop(force?: boolean): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
});

/** A stand-in node: records what it was asked, answers from `script`. */
function node(script: NodeScript) {
  const seen: string[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: async (req) => {
      const path = new URL(req.url).pathname;
      await script.frozen?.();
      seen.push(`${req.method} ${path}`);
      if (path === "/admin/v1/distributed/prepare") return script.prepare?.() ?? Response.json({ model: "m", port: 40001, versions: VERSIONS });
      if (path === "/admin/v1/distributed/ranks") return (await script.ranks?.()) ?? Response.json({ id: "m" });
      if (path.startsWith("/admin/v1/distributed/groups/") && req.method === "GET") return script.heartbeat?.() ?? Response.json({ state: "ready" });
      if (path.startsWith("/admin/v1/distributed/groups/") && req.method === "DELETE") return Response.json({ left: true });
      return Response.json({ error: { message: "Not Found" } }, { status: 404 });
    },
  });
  servers.push(server);
  return { url: `http://127.0.0.1:${server.port}`, seen, server };
}

/** A scheduler that loads rank 0 (after 50 ms, or only when abandoned with `hang`) and records abandoned groups. */
function scheduler(opts: { hang?: boolean } = {}) {
  const abandoned: { group: string; reason: string }[] = [];
  let member: { id: string; placement: Placement; state: string } | undefined;
  let abandonLoad: ((err: Error) => void) | undefined;
  return {
    abandoned,
    get member() {
      return member;
    },
    end() {
      member = undefined;
    },
    loadModel: async (id: string, _s: LoadSettings = {}, placement?: Placement): Promise<ModelStatus> => {
      await new Promise<void>((resolve, reject) => {
        abandonLoad = reject;
        if (!opts.hang) setTimeout(resolve, 50);
      });
      member = { id, placement: placement!, state: "ready" };
      return { descriptor: { id, format: "mlx", path: "/m" }, state: "ready", running: 0, queued: 0 };
    },
    abandonGroup: (group: string, reason: string) => {
      abandoned.push({ group, reason });
      abandonLoad?.(new Error(`abandoned: ${reason}`));
      member = undefined;
      return true;
    },
    groupMember: (group: string) => (member?.placement.group === group ? member : undefined),
    checkShardedLoad: (_id: string, s: LoadSettings) => {
      if (s.draft !== undefined) throw new InvalidRequestError("a model loaded across nodes cannot have a draft model", "speculative", "unsupported_parameter");
    },
  };
}

function coordinator(s: ReturnType<typeof scheduler>, nodes: Record<string, string>, extra: { heartbeatMs?: number } = {}) {
  return new Coordinator(s, { prepare: async () => ({ model: "m", port: 40000, versions: VERSIONS }) }, {
    node: (name) => (nodes[name] ? { name, url: nodes[name]!, key: undefined } : `no peer named '${name}'`),
    toWire: () => ({}),
    source: () => undefined,
    heartbeatMs: extra.heartbeatMs ?? 60_000,
    misses: 2,
    joinTimeoutS: 120,
    pullTimeoutMs: 1000,
    pullPollMs: 10,
  });
}

describe("coordinator of a model across nodes", () => {
  test("names and orders the nodes: local first, no repeats, only known peers", async () => {
    const studio = node({});
    const c = coordinator(scheduler(), { studio: studio.url });
    await expect(c.load("m", ["studio"], {})).rejects.toThrow("must include 'local'");
    await expect(c.load("m", ["local"], {})).rejects.toThrow("at least one peer");
    await expect(c.load("m", ["local", "studio", "studio"], {})).rejects.toThrow("named twice");
    await expect(c.load("m", ["local", "attic"], {})).rejects.toThrow("no peer named 'attic'");
    expect(studio.seen).toEqual([]);
    const status = await c.load("m", ["studio", "local"], {});
    expect(status.state).toBe("ready");
    const [group] = c.list();
    expect(group!.nodes).toEqual(["local", "studio"]);
    expect(group!.hosts).toEqual(["127.0.0.1:40000", "127.0.0.1:40001"]);
    c.close();
  });

  test("refuses before any rank starts when a node runs other versions or is not an LMX", async () => {
    const older = node({ prepare: () => Response.json({ model: "m", port: 1, versions: { ...VERSIONS, mlx: "0.31.0" } }) });
    const foreign = node({ prepare: () => Response.json({ error: { message: "Not Found" } }, { status: 404 }) });
    const s = scheduler();
    const c = coordinator(s, { studio: older.url, vllm: foreign.url });
    const err = await c.load("m", ["local", "studio", "vllm"], {}).catch((e: Error) => e);
    expect(String(err)).toContain("node studio runs mlx 0.31.0, this node 0.32.4");
    expect(String(err)).toContain("node vllm is not an LMX server that can shard models");
    expect(older.seen).toEqual(["POST /admin/v1/distributed/prepare"]);
    expect(s.member).toBeUndefined();
  });

  test("a draft model is refused before any node is asked or any rank starts", async () => {
    const studio = node({});
    const s = scheduler();
    const c = coordinator(s, { studio: studio.url });
    const err = await c.load("m", ["local", "studio"], { draft: "small" }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as InvalidRequestError).status).toBe(400);
    expect(studio.seen).toEqual([]);
    expect(s.member).toBeUndefined();
  });

  test("a node that cannot load its rank ends the local rank at once and every node frees it", async () => {
    const broken = node({ ranks: () => Response.json({ error: { message: "cannot load m: needs 9 GB, budget 4 GB" } }, { status: 507 }) });
    const fine = node({});
    // Rank 0 would wait for the missing rank; only the abandon ends its load.
    const s = scheduler({ hang: true });
    const c = coordinator(s, { studio: broken.url, attic: fine.url });
    const started = Date.now();
    const err = await c.load("m", ["local", "studio", "attic"], {}).catch((e: Error) => e);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(String(err)).toContain("node studio: cannot load m: needs 9 GB, budget 4 GB");
    expect(s.abandoned[0]!.reason).toContain("node studio could not load its rank");
    expect(fine.seen).toContain(`DELETE /admin/v1/distributed/groups/${s.abandoned[0]!.group}`);
  });

  test("missed heartbeats end the group; a rank gone on its node ends it at the first answer", async () => {
    let answering = true;
    const studio = node({ heartbeat: () => (answering ? Response.json({ state: "ready" }) : Response.json({ error: { message: "no rank" } }, { status: 404 })) });
    const attic = node({});
    const s = scheduler();
    const c = coordinator(s, { studio: studio.url, attic: attic.url }, { heartbeatMs: 50 });
    await c.load("m", ["local", "studio", "attic"], {});
    await Bun.sleep(200);
    expect(s.abandoned).toEqual([]);
    expect(studio.seen.filter((x) => x.startsWith("GET")).length).toBeGreaterThan(1);
    answering = false;
    for (let i = 0; i < 100 && s.abandoned.length === 0; i++) await Bun.sleep(20);
    expect(s.abandoned[0]!.reason).toBe("node studio no longer holds its rank (its worker ended or failed there)");
    expect(attic.seen.some((x) => x.startsWith("DELETE"))).toBe(true);
    expect(c.list()).toEqual([]);

    // A node that stops answering: two missed heartbeats.
    const quiet = node({});
    const s2 = scheduler();
    const c2 = coordinator(s2, { studio: quiet.url }, { heartbeatMs: 50 });
    await c2.load("m", ["local", "studio"], {});
    quiet.server.stop(true);
    for (let i = 0; i < 100 && s2.abandoned.length === 0; i++) await Bun.sleep(20);
    expect(s2.abandoned[0]!.reason).toMatch(/^node studio cannot be reached/);
    c.close();
    c2.close();
  });

  test("a node that stops answering is told the group ended once it answers again", async () => {
    // Frozen: requests reach it but get no answer until it thaws (as SIGSTOP does to a server).
    let thaw: () => void = () => {};
    let freeze: Promise<void> | undefined;
    const studio = node({ frozen: () => freeze });
    const s = scheduler();
    const c = coordinator(s, { studio: studio.url }, { heartbeatMs: 50 });
    await c.load("m", ["local", "studio"], {});
    const group = c.list()[0]!.group;
    freeze = new Promise<void>((resolve) => (thaw = resolve));
    for (let i = 0; i < 300 && s.abandoned.length === 0; i++) await Bun.sleep(20);
    expect(s.abandoned[0]!.reason).toMatch(/^node studio did not answer/);
    const told = `DELETE /admin/v1/distributed/groups/${group}`;
    expect(studio.seen).not.toContain(told);
    freeze = undefined;
    thaw();
    for (let i = 0; i < 150 && !studio.seen.includes(told); i++) await Bun.sleep(20);
    expect(studio.seen).toContain(told);
    // Once it has answered, it is not told again.
    const count = studio.seen.filter((x) => x === told).length;
    await Bun.sleep(300);
    expect(studio.seen.filter((x) => x === told)).toHaveLength(count);
    c.close();
  });

  test("rank 0 ending here tells the other nodes to free theirs", async () => {
    const studio = node({});
    const s = scheduler();
    const c = coordinator(s, { studio: studio.url }, { heartbeatMs: 50 });
    await c.load("m", ["local", "studio"], {});
    s.end();
    for (let i = 0; i < 100 && !studio.seen.some((x) => x.startsWith("DELETE")); i++) await Bun.sleep(20);
    expect(studio.seen.some((x) => x.startsWith("DELETE /admin/v1/distributed/groups/"))).toBe(true);
    expect(s.abandoned).toEqual([]);
    c.close();
  });
});

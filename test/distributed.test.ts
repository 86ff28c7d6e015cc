// One MLX model across two LMX nodes (issue 17, part B): two real `lmx serve` processes on
// loopback, each running one rank of the fixture model (2-layer qwen2, random weights) with
// mlx.distributed's ring backend over 127.0.0.1 and `mlx[cpu]`. The coordinator ("laptop") has the
// other ("studio") as a peer and loads the model with nodes [local, studio].

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mlxTestEnv, type MlxTestEnv } from "./helpers/mlx.ts";
import { serveProcess, type ServeProcess } from "./helpers/serve-process.ts";
import { until } from "./helpers/until.ts";
import { filesOfDir, startFakeHub, type FakeHub } from "./hub/fake-hub.ts";

let env: MlxTestEnv;
let laptop: ServeProcess;
let studio: ServeProcess;
let hub: FakeHub & AsyncDisposable;
const HUB_REPO = "lmx-test/mlx-qwen2-tiny";
const dirs: string[] = [];
const MODEL = "mlx-qwen2-tiny";

const tmp = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};

async function json<T>(r: Promise<Response> | Response): Promise<{ status: number; body: T }> {
  const res = await r;
  return { status: res.status, body: (await res.json()) as T };
}


interface Chat {
  choices: { message: { content: string }; logprobs: { content: { token: string }[] } | null; finish_reason: string }[];
  usage: { completion_tokens: number };
  error?: { message: string; code: string };
}

/** A greedy reply's tokens (from logprobs), so equality is token for token. */
async function greedyTokens(node: ServeProcess, prompt: string): Promise<string[]> {
  const { status, body } = await json<Chat>(node.request("/v1/chat/completions", {
    method: "POST", json: { model: MODEL, messages: [{ role: "user", content: prompt }], max_tokens: 12, temperature: 0, logprobs: true },
  }));
  expect(status).toBe(200);
  const tokens = body.choices[0]!.logprobs!.content.map((t) => t.token);
  expect(tokens.length).toBe(body.usage.completion_tokens);
  return tokens;
}

interface Ps {
  data: { id: string; rank?: number; of?: number; coordinator?: string; group?: string; memory_bytes: number }[];
}

/** The pid of the worker process holding rank `rank` of `group` (read from each process's environment). */
function rankWorkerPid(group: string, rank: number): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${entry}/environ`, "latin1");
    } catch {
      continue;
    }
    const vars = environ.split("\0");
    if (vars.includes(`LMX_GROUP=${group}`) && vars.includes(`MLX_RANK=${rank}`)) return Number(entry);
  }
  return undefined;
}

// The second is long enough that rank 0 sends its tokens to the other rank in two collectives.
/** A streamed answer once its first chunk came; `rest()` reads it to the end and gives all its text. */
/** Waits until neither node holds a model; on a timeout, says what each still held. */
async function bothFree(): Promise<void> {
  let held = "";
  await until("both nodes to free the model", async () => {
    const [mine, theirs] = [(await json<Ps>(laptop.request("/admin/v1/ps"))).body.data, (await json<Ps>(studio.request("/admin/v1/ps"))).body.data];
    held = `laptop ${JSON.stringify(mine)}, studio ${JSON.stringify(theirs)}`;
    return mine.length === 0 && theirs.length === 0;
  }, 20_000).catch((err: Error) => {
    throw new Error(`${err.message}; still held: ${held}`);
  });
}

async function firstChunk(res: Response): Promise<{ rest(): Promise<string> }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = decoder.decode((await reader.read()).value);
  return {
    async rest() {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return text;
        text += decoder.decode(value, { stream: true });
      }
    },
  };
}

const PROMPTS = ["Tell me about the sea", `Count the waves: ${"one two three four five ".repeat(20)}`];
const single: string[][] = [];

beforeAll(async () => {
  env = await mlxTestEnv();
  hub = await startFakeHub({ repos: { [HUB_REPO]: { files: filesOfDir(env.model), library: "mlx", tags: ["mlx"] } } });
  const common = ["--python", env.python, "--ctx", "512", "--parallel", "2", "--hub-url", hub.url];
  studio = await serveProcess(tmp("lmx-studio-"), common);
  laptop = await serveProcess(tmp("lmx-laptop-"), [...common, "--peer", `studio=${studio.url}`, "--peer-poll", "1"]);
  for (const node of [laptop, studio]) expect((await node.request("/admin/v1/import", { method: "POST", json: { paths: [env.model] } })).status).toBe(200);
  await peerUp();
}, 600_000);

/** The coordinator's health poll sees the other node up (loads across nodes need that). */
const peerUp = () => until("the peer to be up", async () => {
  const { body } = await json<{ data: { state: string }[] }>(laptop.request("/admin/v1/peers"));
  return body.data[0]?.state === "up";
}, 20_000);

afterAll(async () => {
  await Promise.all([laptop, studio].filter(Boolean).map((n) => n.signal("SIGTERM").exited));
  await hub?.[Symbol.asyncDispose]();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("one MLX model across two nodes", () => {
  test("a load across nodes is refused with the reason before any rank starts", async () => {
    const load = (body: object, model = MODEL) => json<{ error: { message: string; param: string | null } }>(
      laptop.request(`/admin/v1/models/${model}/load`, { method: "POST", json: body }));
    let r = await load({ nodes: ["local", "nowhere"] });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain("no peer named 'nowhere'");
    r = await load({ nodes: ["studio"] });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain("must include 'local'");
    r = await load({ nodes: ["local", "studio", "local"] });
    expect(r.status).toBe(400);
    // A model only this node has: the other node is named with what to do.
    const copy = join(tmp("lmx-only-here-"), "mlx-qwen2-only-here");
    cpSync(env.model, copy, { recursive: true });
    expect((await laptop.request("/admin/v1/import", { method: "POST", json: { paths: [copy] } })).status).toBe(200);
    r = await load({ nodes: ["local", "studio"] }, "mlx-qwen2-only-here");
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain("node studio has no model 'mlx-qwen2-only-here'");
    // Nothing was left loaded on either node.
    for (const node of [laptop, studio]) expect((await json<Ps>(node.request("/admin/v1/ps"))).body.data).toEqual([]);
  }, 120_000);

  test("greedy output across two ranks equals the single-node output, token for token", async () => {
    for (const p of PROMPTS) single.push(await greedyTokens(laptop, p));
    // The model must depend on its prompt, or equality would prove little.
    expect(single[0]).not.toEqual(single[1]);
    expect((await laptop.request(`/admin/v1/models/${MODEL}/unload`, { method: "POST" })).status).toBe(200);

    const loaded = await json<{ rank: number; of: number; group: string; memory_bytes: number }>(
      laptop.request(`/admin/v1/models/${MODEL}/load`, { method: "POST", json: { nodes: ["local", "studio"] } }));
    expect(loaded.status).toBe(200);
    expect(loaded.body).toMatchObject({ rank: 0, of: 2 });
    for (const [i, p] of PROMPTS.entries()) expect(await greedyTokens(laptop, p)).toEqual(single[i]!);

    const listed = await json<{ nodes?: string[] }>(laptop.request(`/v1/models/${MODEL}`));
    expect(listed.body.nodes).toEqual(["local", "studio"]);
    const theirs = (await json<Ps>(studio.request("/admin/v1/ps"))).body.data;
    expect(theirs).toHaveLength(1);
    expect(theirs[0]).toMatchObject({ id: MODEL, rank: 1, of: 2, group: loaded.body.group });
    expect(theirs[0]!.coordinator!.length).toBeGreaterThan(0);
    // Each node admits its share of the model, not all of it.
    const whole = (await json<{ memory_bytes: number }>(laptop.request(`/admin/v1/models/${MODEL}`))).body;
    expect(theirs[0]!.memory_bytes).toBeLessThan(whole.memory_bytes * 2);
    // The follower serves nothing itself and says where to go.
    const refused = await json<Chat>(studio.request("/v1/chat/completions", { method: "POST", json: { model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 } }));
    expect(refused.status).toBe(409);
    expect(refused.body.error!.code).toBe("not_coordinator");
  }, 300_000);

  test("killing a rank's worker fails the running request with a clear error, frees both nodes, and the next request is served", async () => {
    const group = (await json<Ps>(laptop.request("/admin/v1/ps"))).body.data[0]!.group!;
    const res = await laptop.request("/v1/chat/completions", {
      method: "POST", json: { model: MODEL, messages: [{ role: "user", content: PROMPTS[0] }], max_tokens: 400, temperature: 0, stream: true },
    });
    expect(res.status).toBe(200);
    const stream = await firstChunk(res);
    const pid = rankWorkerPid(group, 1);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid!, "SIGKILL");
    const killedAt = Date.now();
    const text = await stream.rest();
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    expect(text).toContain("node_lost");
    // Whichever notices first: rank 0's broken ring, or the heartbeat that finds the rank gone.
    expect(text).toMatch(/the distributed group lost a rank: \[ring\] connection to a peer was lost|node studio no longer holds its rank/);
    // Both nodes free the model: the coordinator's rank failed, the follower's lost its group.
    await bothFree();
    // The next request loads the model again on this node alone (it fits) and gets the same answer.
    expect(await greedyTokens(laptop, PROMPTS[1]!)).toEqual(single[1]!);
  }, 300_000);

  test("a node that stops answering (frozen: server and worker stopped) ends the group within seconds", async () => {
    const loaded = await json<{ group: string }>(laptop.request(`/admin/v1/models/${MODEL}/load`, { method: "POST", json: { nodes: ["local", "studio"] } }));
    expect(loaded.status).toBe(200);
    const res = await laptop.request("/v1/chat/completions", {
      method: "POST", json: { model: MODEL, messages: [{ role: "user", content: PROMPTS[1] }], max_tokens: 400, temperature: 0, stream: true },
    });
    const stream = await firstChunk(res);
    // No TCP reset comes from a frozen machine: only the coordinator's heartbeats notice it.
    const frozen = [studio.proc.pid, rankWorkerPid(loaded.body.group, 1)!];
    for (const pid of frozen) process.kill(pid, "SIGSTOP");
    const frozeAt = Date.now();
    try {
      const text = await stream.rest();
      expect(Date.now() - frozeAt).toBeLessThan(15_000);
      expect(text).toContain("node_lost");
      expect(text).toContain("stopped on this node (rank 0): node studio did not answer");
    } finally {
      for (const pid of frozen) process.kill(pid, "SIGCONT");
    }
    await bothFree();
    // The poll that came while it was frozen marked it down; the next one marks it up.
    await peerUp();
  }, 300_000);

  test("lmx load --nodes loads across nodes; unloading on the coordinator ends the rank on the other node", async () => {
    const cli = Bun.spawn([process.execPath, join(import.meta.dir, "..", "src", "cli", "main.ts"), "load", MODEL, "--nodes", "local,studio"], {
      env: { ...process.env, LMX_URL: laptop.url }, stdout: "pipe", stderr: "pipe",
    });
    const [out, code] = await Promise.all([new Response(cli.stdout).text(), cli.exited]);
    expect(code).toBe(0);
    expect(out).toContain(`loaded ${MODEL} across local, studio (rank 0 of 2 here)`);
    expect((await json<Ps>(studio.request("/admin/v1/ps"))).body.data).toHaveLength(1);
    expect((await laptop.request(`/admin/v1/models/${MODEL}/unload`, { method: "POST" })).status).toBe(200);
    await until("the follower's rank to end", async () => (await json<Ps>(studio.request("/admin/v1/ps"))).body.data.length === 0, 20_000);
    const state = await json<{ state: string }>(studio.request(`/admin/v1/models/${MODEL}`));
    // Ended by its coordinator: unloaded, not failed.
    expect(state.body.state).toBe("unloaded");
  }, 300_000);

  test("a node without a downloaded model downloads the same repo and revision first", async () => {
    const started = await json<{ id: string }>(laptop.request("/admin/v1/downloads", { method: "POST", json: { model: HUB_REPO } }));
    expect(started.status).toBe(202);
    let job: { state: string; model_id: string | null } = { state: "queued", model_id: null };
    await until("the download", async () => {
      job = (await json<typeof job>(laptop.request(`/admin/v1/downloads/${started.body.id}`))).body;
      return job.state === "done" || job.state === "failed";
    }, 60_000);
    expect(job.state).toBe("done");
    const id = job.model_id!;
    expect((await studio.request(`/admin/v1/models/${encodeURIComponent(id)}`)).status).toBe(404);
    const loaded = await json<{ rank: number; of: number }>(laptop.request(`/admin/v1/models/${id}/load`, { method: "POST", json: { nodes: ["local", "studio"] } }));
    expect(loaded.status).toBe(200);
    expect(loaded.body).toMatchObject({ rank: 0, of: 2 });
    const theirs = await json<{ origin: string; source_repo: string }>(studio.request(`/admin/v1/models/${id}`));
    expect(theirs.body).toMatchObject({ origin: "download", source_repo: HUB_REPO });
    expect((await laptop.request(`/admin/v1/models/${id}/unload`, { method: "POST" })).status).toBe(200);
  }, 300_000);
});

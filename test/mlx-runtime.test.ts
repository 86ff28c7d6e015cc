// The MLX runtime's life cycle through the admin API and `lmx runtime`, installing for real with
// uv from PyPI (or, for the offline update, from nothing but uv's cache), plus what users see when
// there is no runtime or a broken one.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { locateUv } from "../src/runtimes/uv.ts";
import { REPO_ROOT } from "./fixtures/prepare.ts";
import { mlxTestEnv, type MlxTestEnv, UV_TEST_CACHE } from "./helpers/mlx.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

/** The parts of /admin/v1/runtimes/{name} these tests read. */
interface RuntimeJson { installed: boolean; source: string | null; path: string | null; up_to_date: boolean; verified_at: string | null; packages: Record<string, string> }

let env: MlxTestEnv;
const savedEnv = { UV_CACHE_DIR: process.env.UV_CACHE_DIR, UV_OFFLINE: process.env.UV_OFFLINE };

beforeAll(async () => {
  env = await mlxTestEnv();
  // The servers below install with uv, which reads its cache location from the environment.
  process.env.UV_CACHE_DIR = UV_TEST_CACHE;
}, 600_000);

afterAll(() => {
  for (const [k, val] of Object.entries(savedEnv)) {
    if (val === undefined) delete process.env[k];
    else process.env[k] = val;
  }
});

const hi = { model: "mlx-qwen2-tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 3, temperature: 0 };

async function importModel(s: TestServer): Promise<void> {
  const r = await s.request("/admin/v1/import", { method: "POST", json: { paths: [env.model] } });
  expect(r.status).toBe(200);
}

async function chat(s: TestServer) {
  const r = await s.request("/v1/chat/completions", { method: "POST", json: hi });
  return { status: r.status, body: (await r.json()) as { choices?: { message: { content: string } }[]; error?: { code: string; message: string } } };
}

/** Runs `lmx …` against the server (asynchronously: the server answers from this very process). */
async function cli(s: TestServer, ...args: string[]) {
  const proc = Bun.spawn([process.execPath, join(REPO_ROOT, "src/cli/main.ts"), ...args, "--url", s.url], {
    stdout: "pipe", stderr: "pipe", env: { ...process.env, LMX_HOME: s.home },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

describe("lmx runtime install / update / remove", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer([]);
    await importModel(s);
  });
  afterAll(async () => {
    await s?.[Symbol.asyncDispose]();
  });

  test("without a runtime, an MLX model answers 503 runtime_not_installed naming the install command", async () => {
    const status = (await (await s.request("/admin/v1/runtimes/mlx")).json()) as RuntimeJson;
    expect(status).toMatchObject({ installed: false, pinned: { mlx: "0.32.4", "mlx-lm": "0.32.2" } });
    const { status: code, body } = await chat(s);
    expect(code).toBe(503);
    expect(body.error!.code).toBe("runtime_not_installed");
    expect(body.error!.message).toContain("lmx runtime install mlx");
    // The model is still listed, from its config.json alone.
    const m = (await (await s.request("/v1/models/mlx-qwen2-tiny")).json()) as { format: string; state: string };
    expect(m).toMatchObject({ format: "mlx", state: "unloaded" });
  });

  test("install shows progress, checks the runtime and records it; MLX models then load", async () => {
    const out = await cli(s, "runtime", "install", "mlx");
    expect(out.stderr).toContain("[packages] installing mlx[cpu]==0.32.4 mlx-lm==0.32.2");
    expect(out.stderr).toContain("[verify] ok: generated 4 tokens");
    expect(out.code).toBe(0);
    expect(out.stdout).toContain("mlx 0.32.4, mlx-lm 0.32.2");
    const status = (await (await s.request("/admin/v1/runtimes")).json()) as { data: RuntimeJson[] };
    expect(status.data[0]).toMatchObject({ installed: true, source: "managed", up_to_date: true, packages: { mlx: "0.32.4", "mlx-lm": "0.32.2" } });
    expect(status.data[0]!.path!.startsWith(join(s.home, "runtimes", "mlx", "envs"))).toBe(true);
    const row = s.server.db.$client.query("SELECT python_version, packages FROM runtimes WHERE name = 'mlx'").get() as { python_version: string; packages: string };
    expect(JSON.parse(row.packages)).toEqual({ mlx: "0.32.4", "mlx-lm": "0.32.2" });
    expect(row.python_version).toMatch(/^3\.\d+\.\d+$/);
    const again = await cli(s, "runtime", "install", "mlx");
    expect(again.stderr).toContain("already installed");
    const { status: code, body } = await chat(s);
    expect(code).toBe(200);
    expect(body.choices![0]!.message.content.length).toBeGreaterThan(0);
  }, 300_000);

  test("a failed update leaves the installed runtime in place and working", async () => {
    const before = (await (await s.request("/admin/v1/runtimes/mlx")).json()) as RuntimeJson;
    const r = await s.request("/admin/v1/runtimes/mlx/update", { method: "POST", json: { python: "/nonexistent/python3" } });
    expect(r.status).toBe(500);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe("runtime_install_failed");
    const after = (await (await s.request("/admin/v1/runtimes/mlx")).json()) as RuntimeJson;
    expect(after.path).toBe(before.path);
    expect(after.installed).toBe(true);
    expect(readdirSync(join(s.home, "runtimes", "mlx", "envs"))).toHaveLength(1);
    // A fresh worker still starts from it.
    await s.request("/admin/v1/models/mlx-qwen2-tiny/unload", { method: "POST" });
    expect((await chat(s)).status).toBe(200);
  }, 120_000);

  test("update works offline from uv's cache, into a new folder, and switches to it", async () => {
    const before = (await (await s.request("/admin/v1/runtimes/mlx")).json()) as RuntimeJson;
    process.env.UV_OFFLINE = "1";
    try {
      const out = await cli(s, "runtime", "update", "mlx");
      expect(out.code).toBe(0);
    } finally {
      delete process.env.UV_OFFLINE;
    }
    const after = (await (await s.request("/admin/v1/runtimes/mlx")).json()) as RuntimeJson;
    expect(after.installed).toBe(true);
    expect(after.path).not.toBe(before.path);
    expect(after.verified_at! > before.verified_at!).toBe(true);
    // The previous folder stays for workers started from it.
    expect(existsSync(before.path!)).toBe(true);
  }, 300_000);

  test("remove is refused while MLX models are loaded, then deletes the runtime", async () => {
    expect((await chat(s)).status).toBe(200);
    const busy = await s.request("/admin/v1/runtimes/mlx", { method: "DELETE" });
    expect(busy.status).toBe(409);
    await s.request("/admin/v1/models/mlx-qwen2-tiny/unload", { method: "POST" });
    const out = await cli(s, "runtime", "remove", "mlx");
    expect(out.code).toBe(0);
    expect(out.stdout).toContain("removed the MLX runtime");
    expect(existsSync(join(s.home, "runtimes", "mlx", "envs"))).toBe(false);
    expect((await cli(s, "runtime", "status")).stdout).toContain("not installed");
    expect((await chat(s)).body.error!.code).toBe("runtime_not_installed");
  }, 60_000);
});

describe("auto-install and broken runtimes", () => {
  test("--auto-install-runtimes installs the runtime on the first MLX request", async () => {
    await using s = await startTestServer(["--auto-install-runtimes"]);
    await importModel(s);
    const { status, body } = await chat(s);
    expect(status).toBe(200);
    expect(body.choices![0]!.message.content.length).toBeGreaterThan(0);
    expect(((await (await s.request("/admin/v1/runtimes/mlx")).json()) as RuntimeJson).installed).toBe(true);
  }, 300_000);

  test("a Python without mlx gives a clear runtime_broken error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lmx-bare-venv-"));
    try {
      const uv = await locateUv(join(dir, "runtimes"));
      const made = Bun.spawnSync([uv.path, "venv", "--no-project", "--python", env.python, join(dir, "venv")], { stdout: "pipe", stderr: "pipe", env: { ...process.env, UV_CACHE_DIR: UV_TEST_CACHE } });
      expect(made.exitCode).toBe(0);
      await using s = await startTestServer(["--python", join(dir, "venv", "bin", "python")]);
      await importModel(s);
      const { status, body } = await chat(s);
      expect(status).toBe(500);
      expect(body.error!.code).toBe("runtime_broken");
      expect(body.error!.message).toContain("No module named 'mlx");
      expect(body.error!.message).toContain("lmx runtime update mlx");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("an interpreter that answers garbage, or none at all, is reported as such", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lmx-fake-python-"));
    try {
      const fake = join(dir, "python");
      writeFileSync(fake, "#!/bin/sh\necho 'Python 2.7 says hello'\nsleep 30\n");
      chmodSync(fake, 0o755);
      {
        await using s = await startTestServer(["--python", fake]);
        await importModel(s);
        const { status, body } = await chat(s);
        expect(status).toBe(500);
        expect(body.error!.message).toContain("sent an invalid message");
      }
      {
        await using s = await startTestServer(["--python", join(dir, "missing-python")]);
        await importModel(s);
        const { status, body } = await chat(s);
        expect(status).toBe(503);
        expect(body.error!.code).toBe("runtime_not_installed");
        expect(body.error!.message).toContain("missing-python");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

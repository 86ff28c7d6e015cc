// Day-0 MLX support: `lmx runtime update mlx --mlx-lm git+URL@REF` installs an mlx-lm that is not
// released yet, side by side, checked before use, with a rollback; and a model whose architecture
// the active mlx-lm lacks gets an error that says which installed runtime knows it.
//
// The "unreleased mlx-lm" is a real git repository made here from the pinned mlx-lm's own files,
// with a branch that adds an architecture (observable: a model of that type loads only there) and
// a branch that does not build.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "./fixtures/prepare.ts";
import { mlxTestEnv, type MlxTestEnv, UV_TEST_CACHE } from "./helpers/mlx.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

interface RuntimeJson {
  installed: boolean; path: string | null; up_to_date: boolean; packages: Record<string, string>; requested: Record<string, string>;
  previous: { path: string; packages: Record<string, string>; requested: Record<string, string> } | null;
}

const FUTURE_ARCH = "lmx_future_arch";
let env: MlxTestEnv;
let root: string;
let repo: string;
let s: TestServer;
const savedCache = process.env.UV_CACHE_DIR;

function git(cwd: string, ...args: string[]): string {
  const r = Bun.spawnSync(["git", "-c", "user.name=LMX test", "-c", "user.email=test@lmx.invalid", "-c", "init.defaultBranch=main", ...args], { cwd });
  if (r.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString().trim();
}

function pyproject(version: string, deps: string[]): string {
  return [
    "[build-system]", 'requires = ["setuptools>=61"]', 'build-backend = "setuptools.build_meta"', "",
    "[project]", 'name = "mlx-lm"', `version = "${version}"`, `dependencies = ${JSON.stringify(deps)}`, "",
    "[tool.setuptools.packages.find]", 'include = ["mlx_lm*"]', "",
  ].join("\n");
}

/** mlx-lm's installed package as a git repository: main = the pinned release, plus `future` and `broken` branches. */
function makeMlxLmRepo(python: string, dir: string): void {
  const probe = Bun.spawnSync([python, "-c",
    "import json, os, importlib.metadata as m, mlx_lm; " +
    "print(json.dumps({'dir': os.path.dirname(mlx_lm.__file__), 'requires': [r for r in (m.requires('mlx-lm') or []) if 'extra ==' not in r]}))"]);
  const info = JSON.parse(probe.stdout.toString()) as { dir: string; requires: string[] };
  mkdirSync(dir, { recursive: true });
  cpSync(info.dir, join(dir, "mlx_lm"), { recursive: true, filter: (p) => !p.includes("__pycache__") });
  writeFileSync(join(dir, "pyproject.toml"), pyproject("0.32.2", info.requires));
  git(dir, "init", "-q");
  git(dir, "add", "-A");
  git(dir, "commit", "-q", "-m", "mlx-lm 0.32.2");
  git(dir, "checkout", "-q", "-b", "future");
  writeFileSync(join(dir, "mlx_lm", "models", `${FUTURE_ARCH}.py`), "# An architecture only this branch knows (the test's stand-in for a new model family).\nfrom .qwen2 import Model, ModelArgs  # noqa: F401\n");
  writeFileSync(join(dir, "pyproject.toml"), pyproject("0.32.3.dev1", info.requires));
  git(dir, "add", "-A");
  git(dir, "commit", "-q", "-m", "add lmx_future_arch");
  git(dir, "checkout", "-q", "-b", "broken", "main");
  writeFileSync(join(dir, "pyproject.toml"), pyproject("0.32.3.dev2", info.requires).replace("[project]", "[project"));
  git(dir, "commit", "-q", "-am", "break the build");
  git(dir, "checkout", "-q", "main");
}

async function cli(...args: string[]) {
  const proc = Bun.spawn([process.execPath, join(REPO_ROOT, "src/cli/main.ts"), ...args, "--url", s.url], {
    stdout: "pipe", stderr: "pipe", env: { ...process.env, LMX_HOME: s.home },
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

const status = async () => (await (await s.request("/admin/v1/runtimes/mlx")).json()) as RuntimeJson;

async function chat(model: string) {
  const r = await s.request("/v1/chat/completions", { method: "POST", json: { model, messages: [{ role: "user", content: "Hi" }], max_tokens: 3, temperature: 0 } });
  return { status: r.status, body: (await r.json()) as { choices?: unknown[]; error?: { code: string; message: string } } };
}

beforeAll(async () => {
  env = await mlxTestEnv();
  process.env.UV_CACHE_DIR = UV_TEST_CACHE;
  root = mkdtempSync(join(tmpdir(), "lmx-mlx-versions-"));
  repo = join(root, "mlx-lm");
  makeMlxLmRepo(env.python, repo);
  // The same tiny model, declared as an architecture only the `future` branch has.
  const future = join(root, "future-tiny");
  cpSync(env.model, future, { recursive: true });
  const config = JSON.parse(readFileSync(join(future, "config.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(join(future, "config.json"), JSON.stringify({ ...config, model_type: FUTURE_ARCH }));
  s = await startTestServer([]);
  for (const path of [env.model, future]) {
    expect((await s.request("/admin/v1/import", { method: "POST", json: { paths: [path] } })).status).toBe(200);
  }
  expect((await cli("runtime", "install", "mlx")).code).toBe(0);
}, 600_000);

afterAll(async () => {
  await s?.[Symbol.asyncDispose]();
  rmSync(root, { recursive: true, force: true });
  if (savedCache === undefined) delete process.env.UV_CACHE_DIR;
  else process.env.UV_CACHE_DIR = savedCache;
});

describe("choosing mlx-lm: versions, git refs, rollback", () => {
  test("a spec that is not a version or a git URL is a 400 naming the field, before anything runs", async () => {
    const before = await status();
    for (const body of [
      { mlx_lm: "0.32.1 --index-url http://evil" }, { mlx_lm: "git+https://user:token@example.com/mlx-lm@main" },
      { mlx_lm: "git+ssh://example.com/x" }, { mlx_lm: "mlx-lm==0.32.1" }, { mlx: "git+file:///tmp/mlx" }, { mlx_lm: "git+file:///r@a..b" },
    ]) {
      const r = await s.request("/admin/v1/runtimes/mlx/update", { method: "POST", json: body });
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { param: string } }).error.param).toBe(Object.keys(body)[0]!);
    }
    expect((await status()).path).toBe(before.path);
  });

  test("an architecture the active mlx-lm lacks names the runtime and the command that gets one", async () => {
    const { status: code, body } = await chat("future-tiny");
    expect(body.error?.code).toBe("unsupported_architecture");
    expect(code).toBeGreaterThanOrEqual(400);
    expect(body.error!.message).toContain(`The active MLX runtime (mlx-lm 0.32.2) has no model class for "${FUTURE_ARCH}"`);
    expect(body.error!.message).toContain("--mlx-lm git+https://github.com/ml-explore/mlx-lm@main");
  }, 60_000);

  test("a ref that does not build fails with the build's message and changes nothing", async () => {
    const before = await status();
    const out = await cli("runtime", "update", "mlx", "--mlx-lm", `git+file://${repo}@broken`);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain("pyproject.toml");
    const after = await status();
    expect(after.path).toBe(before.path);
    expect(after.packages["mlx-lm"]).toBe("0.32.2");
    expect((await chat("mlx-qwen2-tiny")).status).toBe(200);
  }, 300_000);

  test("a git ref installs side by side, is checked, and serves the architecture it adds", async () => {
    const before = await status();
    const spec = `git+file://${repo}@future`;
    const out = await cli("runtime", "update", "mlx", "--mlx-lm", spec);
    expect(out.stderr).toContain(`[packages] installing mlx[cpu]==0.32.4 mlx-lm @ ${spec}`);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`mlx-lm ${spec}`);
    const after = await status();
    expect(after).toMatchObject({ installed: true, up_to_date: false, packages: { "mlx-lm": "0.32.3.dev1" }, requested: { "mlx-lm": spec } });
    expect(after.previous).toMatchObject({ path: before.path, packages: { "mlx-lm": "0.32.2" } });
    const { status: code, body } = await chat("future-tiny");
    expect(code).toBe(200);
    expect(body.choices).toHaveLength(1);
  }, 300_000);

  test("rollback checks the previous runtime and switches back; the error then points at the one that knows the model", async () => {
    const future = await status();
    const out = await cli("runtime", "rollback", "mlx");
    expect(out.code).toBe(0);
    expect(out.stderr).toContain("switched back to mlx 0.32.4, mlx-lm 0.32.2");
    const back = await status();
    expect(back).toMatchObject({ up_to_date: true, packages: { "mlx-lm": "0.32.2" }, requested: {} });
    expect(back.previous?.path).toBe(future.path!);
    expect((await s.request("/admin/v1/models/future-tiny/unload", { method: "POST" })).status).toBe(200);
    const { body } = await chat("future-tiny");
    expect(body.error?.code).toBe("unsupported_architecture");
    expect(body.error!.message).toContain("mlx-lm 0.32.3.dev1 (previous, knows it)");
    expect(body.error!.message).toContain("lmx runtime rollback mlx");
    expect((await chat("mlx-qwen2-tiny")).status).toBe(200);
  }, 300_000);
});

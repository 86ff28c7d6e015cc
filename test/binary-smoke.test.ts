// End-to-end check of the shipped artifact: the compiled `lmx` unpacks its embedded llama.cpp engine
// into a fresh LMX_HOME, serves a chat completion and shuts down cleanly on SIGTERM.
// Set LMX_SMOKE_BINARY to test an existing executable instead of building dist/lmx.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { engineDir } from "../src/engines/llama/bundle.ts";
import { hostTarget, llamaPlatform } from "../src/engines/llama/platform.ts";
import { ADDON_FILE, hasPatchMethods, PREBUILT_ADDON_FILE } from "../scripts/lib/llama-addon.ts";
import { ensureFixtures } from "./fixtures/models.ts";

const REPO = resolve(import.meta.dir, "..");
const MODEL = resolve(REPO, "../shared/models/stories260K.gguf");
/** Has a Jinja chat template, which the executable renders in its embedded worker (template-worker.ts). */
const TEMPLATED_MODEL = ensureFixtures().qwen2Tiny;
const BUILD_VERSION = `${(JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version}-smoke`;
const NLC_VERSION = (JSON.parse(readFileSync(join(REPO, "node_modules/node-llama-cpp/package.json"), "utf8")) as { version: string }).version;

const external = process.env.LMX_SMOKE_BINARY;
const useExternal = external !== undefined && existsSync(external);
const binary = useExternal ? resolve(external) : join(REPO, "dist/lmx");
const home = mkdtempSync(join(tmpdir(), "lmx-smoke-home-"));

afterAll(() => rmSync(home, { recursive: true, force: true }));

beforeAll(async () => {
  if (useExternal) return;
  const build = Bun.spawn([process.execPath, "run", "scripts/build.ts", "--outfile", "dist/lmx", "--version", BUILD_VERSION], {
    cwd: REPO,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(build.stdout).text(), new Response(build.stderr).text(), build.exited]);
  if (code !== 0) throw new Error(`scripts/build.ts failed (${code}):\n${stdout}\n${stderr}`);
}, 600_000);

async function freePort(): Promise<number> {
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = probe.port;
  await probe.stop(true);
  if (port === undefined) throw new Error("could not find a free port");
  return port;
}

test("--version prints the build version", async () => {
  const proc = Bun.spawn([binary, "--version"], { env: { ...process.env, LMX_HOME: home }, stdout: "pipe", stderr: "pipe" });
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  expect(code).toBe(0);
  if (!useExternal) expect(stdout).toContain(BUILD_VERSION);
  else expect(stdout).toMatch(/\d+\.\d+\.\d+/);
});

test("serves a chat completion from a fresh LMX_HOME and exits 0 on SIGTERM", async () => {
  expect(statSync(MODEL).isFile()).toBe(true);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = Bun.spawn([binary, "serve", "--port", String(port), "--model", MODEL, "--model", TEMPLATED_MODEL, "--threads", "1"], {
    // Not the repository: a file the executable failed to embed must not be found on disk instead.
    cwd: home,
    env: { ...process.env, LMX_HOME: home },
    stdout: "pipe",
    stderr: "pipe",
  });
  const output = Promise.all([new Response(server.stdout).text(), new Response(server.stderr).text()]);
  const logs = async (): Promise<string> => (await output).join("\n");
  try {
    // First start unpacks the engine, so allow for more than a warm start needs.
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (server.exitCode !== null) throw new Error(`lmx exited early with ${server.exitCode}:\n${await logs()}`);
      const ok = await fetch(`${base}/health`).then((res) => res.ok, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error("lmx did not become healthy within 60 s");
      await Bun.sleep(100);
    }

    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 16 }),
    });
    const body = (await res.json()) as { choices?: Array<{ message?: { content?: unknown } }> };
    expect({ status: res.status, body }).toMatchObject({ status: 200 });
    const content = body.choices?.[0]?.message?.content;
    expect(typeof content).toBe("string");
    expect((content as string).length).toBeGreaterThan(0);

    const engine = engineDir(home, NLC_VERSION, hostTarget());
    expect(existsSync(engine)).toBe(true);
    if (!useExternal) {
      // The engine carries LMX's addon (runs of tokens), not node-llama-cpp's prebuilt one, which
      // stays out of the bundle.
      const bins = join(engine, "node_modules", llamaPlatform().packageName, "bins", hostTarget());
      expect(hasPatchMethods(join(bins, ADDON_FILE))).toBe(true);
      expect(existsSync(join(bins, PREBUILT_ADDON_FILE))).toBe(false);
    }

    // The API reference's script is embedded: the server runs outside the repository.
    const script = await fetch(`${base}/docs/scalar.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toContain("application/javascript");
    expect((await script.arrayBuffer()).byteLength).toBeGreaterThan(1_000_000);

    // The dashboard: its page for a browser, Ollama's answer for everyone else, and its prebuilt
    // script embedded (the sources are not next to the executable).
    const page = await fetch(`${base}/`, { headers: { accept: "text/html,*/*;q=0.8" } });
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await page.text()).toContain('<script type="module" src="/dashboard/app.js">');
    expect(await (await fetch(`${base}/`)).text()).toBe("Ollama is running");
    const app = await fetch(`${base}/dashboard/app.js`);
    expect(app.status).toBe(200);
    expect(app.headers.get("content-type")).toBe("application/javascript; charset=utf-8");
    const appText = await app.text();
    expect(appText.length).toBeGreaterThan(10_000);
    expect(appText).toContain("/admin/v1/events");

    const templated = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "qwen2-tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 4 }),
    });
    expect({ status: templated.status, body: await templated.text() }).toMatchObject({ status: 200 });

    server.kill("SIGTERM");
    const exited = await Promise.race([server.exited, Bun.sleep(5_000).then(() => "timeout" as const)]);
    if (exited === "timeout") throw new Error(`lmx did not exit within 5 s of SIGTERM:\n${await logs()}`);
    expect(exited).toBe(0);
  } finally {
    if (server.exitCode === null) server.kill("SIGKILL");
  }
}, 120_000);

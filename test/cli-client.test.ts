import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { fixtures } from "./fixtures/models.ts";
import { startTestServer } from "./helpers/server.ts";

const main = join(import.meta.dir, "..", "src", "cli", "main.ts");

async function lmx(url: string, args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn([process.execPath, main, ...args], { env: { ...process.env, LMX_URL: url, ...env }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

describe("client commands against a live server", () => {
  test("ls, load, ps, show, unload, with tables and --json", async () => {
    await using srv = await startTestServer(["--model", fixtures.stories260K]);
    const ls = await lmx(srv.url, ["ls"]);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/^ID\s+FORMAT/);
    expect(ls.stdout).toContain("stories260K");

    const load = await lmx(srv.url, ["load", "stories260K", "--ctx", "512", "--parallel", "2"]);
    expect(load.stdout).toContain("loaded stories260K: context 512 × 2");

    const ps = JSON.parse((await lmx(srv.url, ["ps", "--json"])).stdout) as { data: { id: string; loaded_context_length: number }[] };
    expect(ps.data).toMatchObject([{ id: "stories260K", loaded_context_length: 512 }]);

    const show = await lmx(srv.url, ["show", "stories260K"]);
    expect(show.stdout).toContain("declared 2048, loaded 512");

    expect((await lmx(srv.url, ["unload", "stories260K"])).stdout).toContain("unloaded stories260K");
    expect((await lmx(srv.url, ["ps"])).stdout).toContain("No models loaded.");
  });

  test("errors: unknown model, missing key, no server", async () => {
    await using srv = await startTestServer(["--model", fixtures.stories260K, "--api-key", "k"]);
    const denied = await lmx(srv.url, ["ls"]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain("LMX_API_KEY");
    const missing = await lmx(srv.url, ["load", "nope"], { LMX_API_KEY: "k" });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("does not exist");
    const none = await lmx("http://127.0.0.1:9", ["ps"]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("lmx serve");
    const usage = await lmx(srv.url, ["load"]);
    expect(usage.code).toBe(2);
  });

  test("keys create/list/revoke", async () => {
    await using srv = await startTestServer([]);
    const created = JSON.parse((await lmx(srv.url, ["keys", "create", "--scope", "admin", "--name", "ci", "--json"])).stdout) as { key: string; id: string };
    expect(created.key).toMatch(/^lmx-/);
    const env = { LMX_API_KEY: created.key };
    const list = await lmx(srv.url, ["keys", "list"], env);
    expect(list.stdout).toContain("ci");
    expect(list.stdout).not.toContain(created.key);
    const inf = JSON.parse((await lmx(srv.url, ["keys", "create", "--scope", "inference", "--json"], env)).stdout) as { id: string };
    expect((await lmx(srv.url, ["keys", "revoke", inf.id], env)).stdout).toContain(`revoked ${inf.id}`);
  });

  test("a first key with inference scope prints the admin key created with it", async () => {
    await using srv = await startTestServer([]);
    const out = await lmx(srv.url, ["keys", "create", "--scope", "inference"]);
    expect(out.code).toBe(0);
    const keys = out.stdout.match(/^lmx-\S+$/gm) ?? [];
    expect(keys).toHaveLength(2);
    expect(out.stdout).toContain("This admin key");
    expect((await lmx(srv.url, ["keys", "list"], { LMX_API_KEY: keys[1]! })).code).toBe(0);
  });
});

describe("pull and search", () => {
  test("pull shows progress and ends with the model id; search lists repos with fit", async () => {
    const { startFakeHub, demoRepos } = await import("./hub/fake-hub.ts");
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    await using hub = await startFakeHub({ repos: demoRepos() });
    await using srv = await startTestServer(["--hub-url", hub.url, "--hub-cache", mkdtempSync(join(tmpdir(), "hf-"))]);
    const pulled = await lmx(srv.url, ["pull", "lmx-test/tiny-quants-GGUF:Q8_0"]);
    expect(pulled.code).toBe(0);
    expect(pulled.stdout).toContain("model 'tiny-Q8_0'");
    const again = await lmx(srv.url, ["pull", "nobody/nothing"]);
    expect(again.code).toBe(1);
    expect(again.stdout + again.stderr).toContain("not found");
    const found = await lmx(srv.url, ["search", "tiny"]);
    expect(found.code).toBe(0);
    expect(found.stdout).toMatch(/^REPO\s+FORMAT/);
    expect(found.stdout).toContain("ggml-org/tiny-llamas");
    expect(found.stdout).toContain("mlx-community/tiny-mlx-4bit");
    const ls = await lmx(srv.url, ["ls"]);
    expect(ls.stdout).toContain("lmx-test/tiny-quants-GGUF");
  });
});

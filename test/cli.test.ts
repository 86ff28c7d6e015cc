import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serveSettings, flagName } from "../src/config/settings.ts";
import { fixtures } from "./fixtures/models.ts";

const main = join(import.meta.dir, "..", "src", "cli", "main.ts");
const run = (args: string[], env: Record<string, string> = {}) =>
  Bun.spawnSync([process.execPath, main, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });

describe("lmx CLI", () => {
  test("--version", () => {
    const r = run(["--version"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toMatch(/^lmx \S+/);
  });

  test("help lists commands; serve --help lists every setting with its env var", () => {
    expect(run(["help"]).stdout.toString()).toContain("serve");
    const help = run(["serve", "--help"]).stdout.toString();
    for (const s of serveSettings) {
      expect(help).toContain(flagName(s.key));
      expect(help).toContain(s.description.slice(0, 30));
    }
    expect(help).toContain("LMX_API_KEYS");
    expect(run(["help", "serve"]).stdout.toString()).toBe(help);
  });

  test("unknown commands and options fail with a message, not a stack", () => {
    const a = run(["frobnicate"]);
    expect(a.exitCode).toBe(2);
    expect(a.stderr.toString()).toContain("unknown command");
    const b = run(["serve", "--no-such-flag"]);
    expect(b.exitCode).toBe(2);
    expect(b.stderr.toString()).toBe("lmx: unknown option --no-such-flag\n");
    const c = run(["serve", "--model", "/nonexistent/x.gguf"]);
    expect(c.exitCode).toBe(2);
    expect(c.stderr.toString()).toContain("no such file");
  });

  test("serve runs, answers, and exits 0 on SIGTERM", async () => {
    const home = mkdtempSync(join(tmpdir(), "lmx-cli-"));
    const proc = Bun.spawn([process.execPath, main, "serve", "--port", "0", "--model", fixtures.stories260K, "--threads", "1", "--log-format", "json"], {
      env: { ...process.env, LMX_HOME: home }, stdout: "pipe", stderr: "pipe",
    });
    const reader = proc.stderr.getReader();
    let log = "";
    let url: string | undefined;
    while (!url) {
      const { value, done } = await reader.read();
      if (done) throw new Error("server exited: " + log);
      log += new TextDecoder().decode(value);
      url = log.match(/"url":"(http:[^"]+)"/)?.[1];
    }
    const res = await fetch(url + "/v1/chat/completions", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 4 }),
    });
    expect(res.status).toBe(200);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  });
});

describe("docs stay true", () => {
  test("README's configuration table lists every serve setting", async () => {
    const readme = await Bun.file(join(import.meta.dir, "..", "README.md")).text();
    for (const s of serveSettings) expect(readme).toContain(`\`${flagName(s.key)}`);
  });
});

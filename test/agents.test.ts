// Real coding agents, from their current npm releases, complete a turn against LMX offline:
// Claude Code (`claude -p`) over Anthropic Messages, Codex CLI (`codex exec`) over Responses, both
// with a configured provider and with its `--oss --local-provider lmstudio` mode, which expects LM
// Studio. Telemetry, error reporting and update checks are off; the machine has no internet anyway.
//
// The model is the trained agent model with its declared context raised to 32k. Its training saw
// conversations of at most ~500 tokens; the agents' default prompts are 16k–55k tokens in its
// 691-token vocabulary, and that far from its training it may never stop (a reply cut at the
// context is an error to both agents). So each agent is told, with its own settings, to send a
// short prompt, as one would for a small local model. What the model says is not checked, only
// that each agent got an answer through LMX's API and finished its turn without an error.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureAgentModel } from "./fixtures/agent-model.ts";
import { encodeGguf, kv, readGgufFile } from "./fixtures/gguf.ts";
import { ensureAgentCli, runAgent } from "./helpers/agent-clis.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const MODEL = "agent-qwen3-32k";
const KEY = "lmx-agents-test-key";
const AGENT_TIMEOUT_MS = 240_000;

let dir: string;
let srv: TestServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lmx-agents-"));
  const agent = await ensureAgentModel();
  const gguf = readGgufFile(agent.gguf);
  const metadata = new Map(gguf.metadata).set("qwen3.context_length", kv.u32(32768));
  writeFileSync(join(dir, `${MODEL}.gguf`), encodeGguf({ metadata, tensors: gguf.tensors }));
  srv = await startTestServer(["--model", join(dir, `${MODEL}.gguf`), "--ctx", "32768", "--threads", "2", "--api-key", KEY, "--route", `claude-*=${MODEL}`]);
}, 600_000);

afterAll(async () => {
  await srv?.[Symbol.asyncDispose]();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A fresh home and working folder per run: no user settings, sessions or caches leak in. */
function sandbox(name: string): { home: string; cwd: string; env: Record<string, string> } {
  const home = join(dir, name, "home");
  const cwd = join(dir, name, "work");
  for (const d of [home, cwd]) Bun.spawnSync(["mkdir", "-p", d]);
  return { home, cwd, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, LANG: "C.UTF-8" } };
}

describe("real agents against LMX", () => {
  test("Claude Code completes a turn over Anthropic Messages, its model names routed to a local model", async () => {
    const claude = await ensureAgentCli("@anthropic-ai/claude-code", "2.1.328", "claude");
    const box = sandbox("claude");
    const res = await runAgent(claude.bin, [
      "-p", "Hello!", "--output-format", "json", "--max-turns", "2",
      // Its default prompt (12k tokens in a real vocabulary, 55k in this model's) would not fit.
      "--system-prompt", "You are a helpful assistant.", "--tools", "",
    ], {
      cwd: box.cwd,
      timeoutMs: AGENT_TIMEOUT_MS,
      env: {
        ...box.env,
        ANTHROPIC_BASE_URL: srv.url,
        ANTHROPIC_AUTH_TOKEN: KEY,
        ANTHROPIC_MODEL: "claude-sonnet-4-6",
        ANTHROPIC_SMALL_FAST_MODEL: "claude-haiku-4-5",
        DISABLE_TELEMETRY: "1",
        DISABLE_AUTOUPDATER: "1",
        DISABLE_ERROR_REPORTING: "1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      },
    });
    if (res.code !== 0) console.error(res.stderr.slice(-3000));
    expect(res.code).toBe(0);
    const out = JSON.parse(res.stdout) as { type: string; is_error: boolean; result: string; usage: { input_tokens: number; output_tokens: number }; terminal_reason: string };
    expect(out).toMatchObject({ type: "result", is_error: false, terminal_reason: "completed" });
    expect(out.result.length).toBeGreaterThan(0);
    // The usage Claude Code read from LMX's answers.
    expect(out.usage.input_tokens).toBeGreaterThan(100);
    expect(out.usage.output_tokens).toBeGreaterThan(0);
  }, AGENT_TIMEOUT_MS + 120_000);

  // Codex's own prompt (instructions, skills, a dozen tools) comes to ~16k tokens here; with a
  // one-line instructions file, no skills and only the shell tools it is ~3k.
  const codexArgs = (provider: string[], home: string) => {
    const instructions = join(home, "instructions.md");
    writeFileSync(instructions, "You are a helpful assistant.\n");
    return [
      "exec", "--skip-git-repo-check", ...provider, "-m", MODEL,
      "-c", "check_for_update_on_startup=false", "-c", "analytics.enabled=false", "-c", "feedback.enabled=false",
      "-c", `model_instructions_file=${JSON.stringify(instructions)}`,
      "-c", "skills.include_instructions=false", "-c", "skills.bundled.enabled=false", "-c", 'web_search="disabled"',
      ...["multi_agent", "goals", "view_image", "skill_search", "apps", "plugins"].flatMap((f) => ["--disable", f]),
      "Hello!",
    ];
  };

  test("Codex CLI completes a turn over Responses with a configured provider", async () => {
    const codex = await ensureAgentCli("@openai/codex", "0.169.0", "codex");
    const box = sandbox("codex");
    const res = await runAgent(codex.bin, codexArgs([
      "-c", "model_provider=lmx",
      "-c", 'model_providers.lmx.name="LMX"',
      "-c", `model_providers.lmx.base_url="${srv.url}/v1"`,
      "-c", 'model_providers.lmx.wire_api="responses"',
      "-c", 'model_providers.lmx.env_key="LMX_API_KEY"',
    ], box.home), { cwd: box.cwd, timeoutMs: AGENT_TIMEOUT_MS, env: { ...box.env, CODEX_HOME: box.home, LMX_API_KEY: KEY } });
    if (res.code !== 0) console.error(res.stderr.slice(-3000));
    expect(res.code).toBe(0);
    // `codex exec` prints the tokens the turn used as the server reported them.
    expect(res.stdout + res.stderr).toMatch(/tokens used\s+[\d,]+/);
  }, AGENT_TIMEOUT_MS + 120_000);

  test("Codex CLI's --oss --local-provider lmstudio mode works against LMX as it would against LM Studio", async () => {
    const codex = await ensureAgentCli("@openai/codex", "0.169.0", "codex");
    const box = sandbox("codex-oss");
    // That mode sends no key, as LM Studio needs none on localhost: a server without keys, as
    // `lmx serve` starts by default. Its provider goes to 127.0.0.1:1234, LMX's default port; the
    // test server has its own, given the way Codex documents for its local providers.
    await using open = await startTestServer(["--model", join(dir, `${MODEL}.gguf`), "--ctx", "32768", "--threads", "2"]);
    const res = await runAgent(codex.bin, codexArgs(["--oss", "--local-provider", "lmstudio"], box.home), {
      cwd: box.cwd,
      timeoutMs: AGENT_TIMEOUT_MS,
      env: { ...box.env, CODEX_HOME: box.home, CODEX_OSS_BASE_URL: `${open.url}/v1` },
    });
    if (res.code !== 0) console.error(res.stderr.slice(-3000));
    expect(res.code).toBe(0);
    expect(res.stdout + res.stderr).toMatch(/tokens used\s+[\d,]+/);
  }, AGENT_TIMEOUT_MS + 120_000);
});

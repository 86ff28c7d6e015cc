// `lmx run` end to end: the CLI as a child process against a real `lmx serve` child with the real
// engine. Exact replies come from the trained agent model (greedy), whose thoughts arrive as
// reasoning_content; stories260K (1 thread) gives long replies to stop and short ones to count.
// The chat runs on a real pseudo-terminal (test/helpers/pty_driver.py) so readline's line
// editing and the raw-mode Ctrl-C are what a person at a terminal gets.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureAgentModel, type AgentModel } from "./fixtures/agent-model.ts";
import { fixtures } from "./fixtures/models.ts";
import { serveProcess, type ServeProcess } from "./helpers/serve-process.ts";

const MAIN = join(import.meta.dir, "..", "src", "cli", "main.ts");
const DRIVER = join(import.meta.dir, "helpers", "pty_driver.py");
const AGENT = "agent-qwen3";
const ANSI = /\x1b\[/;

let srv: ServeProcess;
let agent: AgentModel;
let dir: string;

beforeAll(async () => {
  agent = await ensureAgentModel();
  dir = mkdtempSync(join(tmpdir(), "lmx-run-"));
  srv = await serveProcess(join(dir, "home"), ["--model", fixtures.stories260K, "--model", `short=${fixtures.stories260K}`, "--model", agent.gguf]);
});

afterAll(async () => {
  await srv?.signal("SIGTERM").exited;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function lmx(args: string[], opts: { stdin?: string | Bun.BunFile; url?: string } = {}) {
  const stdin = typeof opts.stdin === "string" ? new Blob([opts.stdin]) : opts.stdin;
  const p = Bun.spawn([process.execPath, MAIN, "run", ...args], {
    env: { ...process.env, LMX_URL: opts.url ?? srv.url }, stdin: stdin ?? "ignore", stdout: "pipe", stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

const reply = (name: string) => agent.expected(name);

/** Whether the model has no request running within `ms` (the server notices a closed connection soon, not at once). */
async function idleWithin(model: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ps = (await (await srv.request("/admin/v1/ps")).json()) as { data: { id: string; active_requests: number }[] };
    if (ps.data.find((m) => m.id === model)?.active_requests === 0) return true;
    if (Date.now() > deadline) return false;
    await Bun.sleep(100);
  }
}
const OSLO = "What is the weather in Oslo?";
const GREETING_SYSTEM = "You are a helpful assistant.";

describe("lmx run, one prompt", () => {
  test("streams the answer as plain text, thoughts left out when piped, nothing on stderr", async () => {
    const r = await lmx([AGENT, OSLO, "--temperature", "0"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(reply("no_tools").rest + "\n");
    expect(r.stdout).not.toMatch(ANSI);
  });

  test("--reasoning show prints the thoughts in <think> tags, still without colours", async () => {
    const r = await lmx([AGENT, OSLO, "--temperature", "0", "--reasoning", "show"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`<think>\n${reply("no_tools").thought}\n</think>\n\n${reply("no_tools").rest}\n`);
    expect(r.stdout).not.toMatch(ANSI);
  });

  test("piped stdin is the prompt; with an argument too, the argument comes first, then a blank line", async () => {
    const piped = await lmx([AGENT, "--system", GREETING_SYSTEM, "--temperature", "0"], { stdin: "Hello!\n" });
    expect(piped.stdout).toBe(reply("greeting").rest + "\n");

    const file = join(dir, "oslo.txt");
    writeFileSync(file, OSLO + "\n");
    const redirected = await lmx([AGENT, "--temperature", "0"], { stdin: Bun.file(file) });
    expect(redirected.stdout).toBe(reply("no_tools").rest + "\n");

    const opts = ["--temperature", "0", "--max-tokens", "24"];
    const combined = await lmx(["stories260K", "Lily saw a cat", ...opts], { stdin: "The dog ran\n" });
    const argFirst = await lmx(["stories260K", "Lily saw a cat\n\nThe dog ran", ...opts]);
    const stdinFirst = await lmx(["stories260K", "The dog ran\n\nLily saw a cat", ...opts]);
    expect(combined.code).toBe(0);
    expect(combined.stdout).toBe(argFirst.stdout);
    expect(combined.stdout).not.toBe(stdinFirst.stdout);
  });

  test("@prompts.toml:KEY with --var placeholders, dotted and top-level keys; @file.md", async () => {
    const toml = join(dir, "prompts.toml");
    writeFileSync(toml, 'greeting = "Hello!"\n\n[weather]\nask = "What is the weather in {{ city }}?"\n');
    const dotted = await lmx([AGENT, `@${toml}:weather.ask`, "--var", "city=Oslo", "--temperature", "0"]);
    expect(dotted.stderr).toBe("");
    expect(dotted.stdout).toBe(reply("no_tools").rest + "\n");
    const top = await lmx([AGENT, `@${toml}:greeting`, "--system", GREETING_SYSTEM, "--temperature", "0"]);
    expect(top.stdout).toBe(reply("greeting").rest + "\n");

    const md = join(dir, "ask.md");
    writeFileSync(md, OSLO + "\n");
    expect((await lmx([AGENT, `@${md}`, "--temperature", "0"])).stdout).toBe(reply("no_tools").rest + "\n");
  });

  test("prompt errors are one line on stderr with exit 2: missing var, unknown key, missing file, --var without TOML", async () => {
    const toml = join(dir, "errors.toml");
    writeFileSync(toml, '[weather]\nask = "Weather in {{city}} on {{day}}?"\n');
    const missing = await lmx([AGENT, `@${toml}:weather.ask`, "--var", "city=Oslo"]);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toBe("lmx: the prompt's placeholder {{day}} has no value; pass --var day=VALUE\n");

    const key = await lmx([AGENT, `@${toml}:weather.nope`]);
    expect(key.code).toBe(2);
    expect(key.stderr).toBe(`lmx: no key 'weather.nope' in ${toml} (prompts there: weather.ask)\n`);

    const file = await lmx([AGENT, `@${join(dir, "absent.md")}`]);
    expect(file.code).toBe(2);
    expect(file.stderr).toContain("no such file");

    const empty = await lmx([AGENT], { stdin: " \n" });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("no prompt");

    const stray = await lmx([AGENT, "hi", "--var", "a=b"]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain("--var");
  });

  test("--json prints the whole response with the reasoning", async () => {
    const r = await lmx([AGENT, OSLO, "--temperature", "0", "--json"]);
    expect(r.code).toBe(0);
    const body = JSON.parse(r.stdout) as { object: string; choices: { message: { content: string; reasoning_content: string }; finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(body.object).toBe("chat.completion");
    expect(body.choices[0]!.message).toMatchObject({ content: reply("no_tools").rest, reasoning_content: reply("no_tools").thought });
    expect(body.choices[0]!.finish_reason).toBe("stop");
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
  });

  test("--max-tokens bounds the reply; without it the reply runs until the context is full", async () => {
    const bounded = JSON.parse((await lmx(["stories260K", "Once upon a time", "--max-tokens", "5", "--json", "--seed", "7"])).stdout) as { choices: { finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(bounded.usage.completion_tokens).toBe(5);
    expect(bounded.choices[0]!.finish_reason).toBe("length");

    const full = JSON.parse((await lmx(["short", "Once upon a time", "--ctx", "128", "--json", "--temperature", "0"])).stdout) as { choices: { finish_reason: string }[]; usage: { prompt_tokens: number; completion_tokens: number } };
    expect(full.choices[0]!.finish_reason).toBe("length");
    expect(full.usage.prompt_tokens + full.usage.completion_tokens).toBe(128);
  });

  test("Ctrl-C (SIGINT) stops a one-shot reply: exit 130, and the server stops generating", async () => {
    const p = Bun.spawn([process.execPath, MAIN, "run", "stories260K", "Once upon a time", "--temperature", "0"], {
      env: { ...process.env, LMX_URL: srv.url }, stdin: "ignore", stdout: "pipe", stderr: "pipe",
    });
    const reader = p.stdout.getReader();
    let out = "";
    while (out.length < 12) out += new TextDecoder().decode((await reader.read()).value);
    p.kill("SIGINT");
    for (let r = await reader.read(); !r.done; r = await reader.read()) out += new TextDecoder().decode(r.value);
    expect(await p.exited).toBe(130);
    // A whole reply fills the 2048-token context: thousands of characters.
    expect(out.length).toBeLessThan(1000);
    expect(await idleWithin("stories260K", 3000)).toBe(true);
  });

  test("piped stdin is bounded", async () => {
    const r = await lmx([AGENT], { stdin: "x".repeat(16 * 1024 * 1024 + 1) });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("lmx: standard input is larger than 16 MiB\n");
  });

  test("unknown model and no server: one line on stderr, exit 1", async () => {
    const unknown = await lmx(["no-such-model", "hi"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^lmx: The model 'no-such-model' does not exist\..*\n$/);
    const none = await lmx([AGENT, "hi"], { url: "http://127.0.0.1:9" });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("Start one with 'lmx serve'");
    expect(none.stderr.trim().split("\n")).toHaveLength(1);
  });
});

type Step = { send: string } | { expect: string; timeout?: number };

/** `lmx run ARGS` on a pseudo-terminal, driven by `steps`; returns the exit code and everything it wrote. */
async function onTerminal(args: string[], steps: Step[]) {
  const p = Bun.spawn(["python3", DRIVER, JSON.stringify(steps), process.execPath, MAIN, "run", ...args], {
    env: { ...process.env, LMX_URL: srv.url, TERM: "xterm" }, stdout: "pipe", stderr: "pipe",
  });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (!out.trim()) throw new Error(`pty driver failed: ${err}`);
  return JSON.parse(out) as { exit: number | null; transcript: string; error: string | null };
}

const PROMPT = ">>> ";
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("lmx run, interactive on a terminal", () => {
  test("chat with history, /set, /system, /clear, \"\"\" blocks, dimmed thoughts, /bye", async () => {
    const r = await onTerminal([AGENT], [
      { expect: PROMPT },
      { send: "/set temperature 0\r" }, { expect: "Set temperature to 0\\." }, { expect: PROMPT },
      { send: `${OSLO}\r` }, { expect: `${esc(reply("no_tools").rest)}\r\n` }, { expect: PROMPT },
      { send: "/clear\r" }, { expect: "Cleared the conversation\\." }, { expect: PROMPT },
      { send: `/system ${GREETING_SYSTEM}\r` }, { expect: "Set the system prompt\\." }, { expect: PROMPT },
      { send: '"""\r' }, { expect: "\\.\\.\\. " }, { send: 'Hello!\r' }, { expect: "\\.\\.\\. " }, { send: '"""\r' },
      { expect: `${esc(reply("greeting").rest)}\r\n` }, { expect: PROMPT },
      { send: "/?\r" }, { expect: "/bye" }, { expect: PROMPT },
      { send: "/bye\r" },
    ]);
    expect(r.error).toBeNull();
    expect(r.exit).toBe(0);
    // stderr is the terminal here, so loading shows a progress line (which is then cleared).
    expect(r.transcript).toContain(`loading ${AGENT}`);
    // Thoughts are dimmed, and the answer after them is not.
    expect(r.transcript).toContain(`\x1b[2m${reply("no_tools").thought}\r\n\x1b[22m\r\n${reply("no_tools").rest}`);
    expect(r.transcript).toContain(`\x1b[2m${reply("greeting").thought}`);
  }, 60_000);

  test("each turn sends the conversation so far; /clear starts over", async () => {
    const turn = (text: string): Step[] => [{ send: `${text}\r` }, { expect: `${esc(text)}\r\r\n.*?${PROMPT}` }];
    const r = await onTerminal(["stories260K"], [
      { expect: PROMPT },
      { send: "/set temperature 0\r" }, { expect: PROMPT }, { send: "/set max_tokens 12\r" }, { expect: PROMPT },
      ...turn("Lily saw a cat"), ...turn("The dog ran"),
      { send: "/clear\r" }, { expect: PROMPT },
      ...turn("The dog ran"),
      { send: "/bye\r" },
    ]);
    expect(r.exit).toBe(0);
    // A reply is what follows the echoed input, up to the length note or the next prompt.
    const replies = [...r.transcript.matchAll(/(?:Lily saw a cat|The dog ran)\r\r\n([^]*?)\r\n(?:\x1b\[2m\(the reply|\x1b\[1G)/g)].map((m) => m[1]!.replace(/\r\n/g, "\n"));
    expect(replies).toHaveLength(3);
    const chat = async (messages: { role: string; content: string }[]) => {
      const res = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "stories260K", messages, temperature: 0, max_tokens: 12 } });
      return ((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    };
    const [first, second, afterClear] = replies as [string, string, string];
    expect(second).toBe(await chat([{ role: "user", content: "Lily saw a cat" }, { role: "assistant", content: first }, { role: "user", content: "The dog ran" }]));
    expect(afterClear).toBe(await chat([{ role: "user", content: "The dog ran" }]));
    expect(afterClear).not.toBe(second);
  }, 30_000);

  test("Ctrl-C stops a reply and the prompt comes back; Ctrl-C twice at an empty prompt leaves", async () => {
    const r = await onTerminal(["stories260K"], [
      { expect: PROMPT },
      { send: "Once upon a time\r" }, { expect: "Once upon a time\r\r\n[^>]{12}" },
      { send: "\x03" }, { expect: PROMPT },
      { send: "\x03" }, { expect: "Press Ctrl-C again" },
      { send: "\x03" },
    ]);
    expect(r.error).toBeNull();
    expect(r.exit).toBe(0);
    // Stopped early: a whole reply fills the 2048-token context (thousands of characters).
    const stopped = r.transcript.split("Once upon a time\r\r\n")[1]!.split(PROMPT)[0]!;
    expect(stopped.length).toBeLessThan(1000);
    // ... and the server stopped generating it too (a whole reply takes seconds).
    expect(await idleWithin("stories260K", 3000)).toBe(true);
  }, 30_000);
});

// Hostile chat templates (issue 15, item 2): a GGUF's tokenizer.chat_template is code from the
// internet. Each case is a tiny qwen2 model whose template breaks one limit, served by a real
// `lmx serve` process: the chat request fails with a clear 4xx in OpenAI's shape within a time
// bound, /health keeps answering, the process stays within a memory bound, and the server still
// serves a normal chat afterwards. Last, SIGTERM stops the server even while a render is running.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ensureFixtures } from "../fixtures/models.ts";
import { sharedModel, SYNTHETIC_FIXTURES } from "../fixtures/prepare.ts";
import { synthesizeModel } from "../fixtures/synth.ts";
import { mlxTestEnv } from "../helpers/mlx.ts";
import { WorkerRequestError, WorkerSupervisor } from "../../src/engines/mlx/supervisor.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const CHATML = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
  + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
/** A format no specialised wrapper of node-llama-cpp matches, so requests are rendered from the template itself. */
const CUSTOM = "{% for message in messages %}{{ '<<' + message['role'] + '>> ' + message['content'] + '\n' }}{% endfor %}"
  + "{% if add_generation_prompt %}{{ '<<assistant>> ' }}{% endif %}";
/** Exponential work: fib-shaped recursion, fine for small n, hours for 40. */
const FIB = "{% macro fib(n) %}{% if n < 2 %}1{% else %}{{ fib(n - 1) }}{{ fib(n - 2) }}{% endif %}{% endmacro %}";

const HOSTILE: Record<string, { template: string; why: string }> = {
  "huge-range": { template: "{% for i in range(10**9) %}{% endfor %}" + CHATML, why: "range() of a billion" },
  "nested-loops": { template: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}" + CHATML, why: "10^10 iterations" },
  "recursive-macro": { template: FIB + "{{ fib(40) }}" + CHATML, why: "exponential macro recursion" },
  "string-growth": { template: "{% set s = 'x' %}{% for i in range(60) %}{% set s = s ~ s %}{% endfor %}{{ s }}" + CHATML, why: "a string doubled 60 times" },
  "deep-recursion": { template: "{% macro down(n) %}{% if n > 0 %}{{ down(n - 1) }}{% endif %}{% endmacro %}{{ down(1000000) }}" + CHATML, why: "a million nested calls" },
  "filter-bomb": { template: "{{ 'x' | indent(2000000000, true) }}" + CHATML, why: "one filter call asking for 2 GB" },
  // Harmless for the sample chats rendered at load; explodes on a request with many messages.
  "request-time": { template: "{% if messages | length > 8 %}" + FIB + "{{ fib(40) }}{% endif %}" + CUSTOM, why: "work only on long chats" },
};

const TIME_BOUND_MS = 10_000;
const HEALTH_BOUND_MS = 2_000;
const RSS_GROWTH_BOUND = 400 * 1024 * 1024;

let dir: string;
let proc: ReturnType<typeof Bun.spawn> | undefined;
let url: string;
let stderr = "";

function rssBytes(pid: number): number {
  const out = Bun.spawnSync(["ps", "-o", "rss=", "-p", String(pid)]).stdout.toString().trim();
  return Number.parseInt(out, 10) * 1024;
}

/** A chat request, given up on after `timeoutMs` (loading a model on this shared CI machine can take a while). */
function chat(model: string, messages = [{ role: "user", content: "Hi" }], timeoutMs = TIME_BOUND_MS + 5_000): Promise<Response> {
  return fetch(url + "/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages, max_tokens: 4, temperature: 0 }),
    signal: AbortSignal.timeout(timeoutMs),
  });
}

describe("hostile chat templates", () => {
  beforeAll(async () => {
    const fixtures = ensureFixtures();
    dir = mkdtempSync(join(tmpdir(), "lmx-hostile-templates-"));
    const { file: _file, vocab, ...shape } = SYNTHETIC_FIXTURES.qwen2Tiny;
    const models = ["--model", `good=${fixtures.qwen2Tiny}`];
    const SIGTERM_TEMPLATE = "{# a template of its own, so no refusal is remembered for it #}" + HOSTILE["request-time"]!.template;
    for (const [name, { template }] of [...Object.entries(HOSTILE), ["sigterm", { template: SIGTERM_TEMPLATE }] as const]) {
      const out = join(dir, `${name}.gguf`);
      synthesizeModel({ ...shape, vocab: sharedModel(vocab), out, chatTemplate: template, name });
      models.push("--model", `${name}=${out}`);
    }
    proc = Bun.spawn([process.execPath, MAIN, "serve", "--port", "0", "--threads", "1", "--ctx", "512", "--log-format", "json", ...models], {
      env: { ...process.env, LMX_HOME: join(dir, "home") },
      stdout: "ignore",
      stderr: "pipe",
    });
    const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader();
    let found: string | undefined;
    while (found === undefined) {
      const { value, done } = await reader.read();
      if (done) throw new Error("lmx serve exited: " + stderr);
      stderr += new TextDecoder().decode(value);
      found = /"url":"(http:[^"]+)"/.exec(stderr)?.[1];
    }
    url = found;
    void (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        stderr += new TextDecoder().decode(value);
      }
    })();
    // Warm: the good model loaded and answering, so the memory baseline includes a loaded model.
    expect((await chat("good", undefined, 90_000)).status).toBe(200);
  }, 120_000);

  afterAll(() => {
    if (proc !== undefined && proc.exitCode === null) proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [name, { why }] of Object.entries(HOSTILE)) {
    test(`${name} (${why}) fails its request with a 4xx and the server keeps serving`, async () => {
      // Loaded first where the template lets it load, so the time bound is the template's alone.
      if (name === "request-time") expect((await chat(name, undefined, 90_000)).status).toBe(200);
      const pid = proc!.pid;
      const rssBefore = rssBytes(pid);
      let rssPeak = rssBefore;
      const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssBytes(pid)); }, 50);
      const started = performance.now();
      const messages = name === "request-time"
        ? Array.from({ length: 9 }, (_, i) => ({ role: i % 2 === 0 ? "user" : "assistant", content: `message ${i}` }))
        : undefined;
      const pending = chat(name, messages);
      // The event loop stays free while the template is being refused.
      await Bun.sleep(200);
      const healthStarted = performance.now();
      const health = await fetch(url + "/health", { signal: AbortSignal.timeout(TIME_BOUND_MS) });
      const healthMs = performance.now() - healthStarted;
      const res = await pending;
      const elapsed = performance.now() - started;
      clearInterval(sampler);
      rssPeak = Math.max(rssPeak, rssBytes(pid));

      const body = (await res.json()) as { error?: { message: string; type: string; code: string | null } };
      expect({ status: res.status, code: body.error?.code, type: body.error?.type }).toEqual({ status: 400, code: "invalid_chat_template", type: "invalid_request_error" });
      expect(body.error?.message).toContain("chat template");
      // One object, so a failure shows every measurement. /health's bound leaves room for reading the
      // GGUF's metadata, which shares the event loop (unguarded, /health never answers at all).
      const measured = { health: health.status, healthMs: Math.round(healthMs), elapsedMs: Math.round(elapsed), rssGrowthMB: Math.round((rssPeak - rssBefore) / 2 ** 20) };
      expect({ ...measured, healthFast: healthMs < HEALTH_BOUND_MS, inTime: elapsed < TIME_BOUND_MS, rssBounded: rssPeak - rssBefore < RSS_GROWTH_BOUND })
        .toMatchObject({ health: 200, healthFast: true, inTime: true, rssBounded: true });

      // A second request is refused too (and faster: the verdict is remembered for a while).
      const again = await chat(name, messages);
      expect(again.status).toBe(400);

      const good = await chat("good");
      expect(good.status).toBe(200);
      const reply = (await good.json()) as { choices: Array<{ message: { content: string } }> };
      expect(typeof reply.choices[0]?.message.content).toBe("string");
    }, 60_000);
  }

  test("SIGTERM stops the server while a hostile template is being rendered", async () => {
    expect((await chat("sigterm", undefined, 90_000)).status).toBe(200);
    const pending = chat("sigterm", Array.from({ length: 11 }, (_, i) => ({ role: i % 2 === 0 ? "user" : "assistant", content: `m${i}` })))
      .catch(() => undefined);
    await Bun.sleep(300);
    const started = performance.now();
    // Unguarded, the main thread would be inside the render now and SIGTERM would never be handled.
    proc!.kill("SIGTERM");
    const exited = await Promise.race([proc!.exited, Bun.sleep(10_000).then(() => "timeout" as const)]);
    if (exited === "timeout") throw new Error(`lmx did not exit within 10 s of SIGTERM:\n${stderr.slice(-2000)}`);
    expect(performance.now() - started).toBeLessThan(10_000);
    await pending;
  }, 120_000);
});

// MLX: transformers renders the template with jinja2 inside the worker process. A hostile one costs
// its request (a clear protocol error within the time limit), not the worker: the heartbeat keeps
// coming, and the same worker serves the next, template-free, request.
describe("hostile chat templates in the MLX worker", () => {
  let sup: WorkerSupervisor;
  let modelDir: string;
  beforeAll(async () => {
    const env = await mlxTestEnv();
    modelDir = mkdtempSync(join(tmpdir(), "lmx-hostile-mlx-"));
    cpSync(env.model, modelDir, { recursive: true });
    const configPath = join(modelDir, "tokenizer_config.json");
    const config = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
    // range() is capped by jinja2's sandbox at 100,000 items; two nested ones are 10^10 iterations.
    config.chat_template = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}" + CHATML;
    writeFileSync(configPath, JSON.stringify(config));
    sup = new WorkerSupervisor({
      label: "hostile-template",
      command: [env.python, join(resolve(import.meta.dir, "../.."), "native", "mlx_worker")],
      load: { path: modelDir, context_length: 512, parallel: 1, prefill_step_size: 256 },
      hangTimeoutMs: 3000,
      backoffMs: 200,
    });
    await sup.ensureRunning();
  }, 600_000);
  afterAll(async () => {
    await sup?.stop();
    if (modelDir !== undefined) rmSync(modelDir, { recursive: true, force: true });
  });

  test("a template that never ends fails its request with invalid_chat_template; the worker keeps serving", async () => {
    const pid = sup.pid;
    const started = performance.now();
    const err = await sup.generate({
      type: "generate", id: sup.newId("g"), prompt: { kind: "chat", messages: [{ role: "user", content: "Hi" }] },
      max_tokens: 4, sampling: { temperature: 0 }, parse_tools: false,
    }, () => undefined).then(() => undefined, (e: unknown) => e);
    expect(performance.now() - started).toBeLessThan(TIME_BOUND_MS);
    expect(err).toBeInstanceOf(WorkerRequestError);
    expect((err as WorkerRequestError).reply).toMatchObject({ code: "invalid_chat_template", message: expect.stringContaining("chat template") });
    expect(sup.state).toBe("ready");
    expect(sup.pid).toBe(pid);
    const done = await sup.generate({
      type: "generate", id: sup.newId("g"), prompt: { kind: "text", text: "Once upon a time" },
      max_tokens: 4, sampling: { temperature: 0 }, parse_tools: false,
    }, () => undefined);
    expect(done.completion_tokens).toBe(4);
  }, 60_000);
});

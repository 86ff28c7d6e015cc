// Speculative decoding on an MLX model with the real mlx-lm worker, through the official OpenAI
// SDK: the fixture (a 2-layer qwen2) drafting for itself, which is a draft with the same
// vocabulary. Greedy output with the draft is the same as without it, text and logprobs, while
// drafts are accepted; the prompt cache, stop strings and cancellation keep working.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import OpenAI from "openai";
import { REPO_ROOT } from "./fixtures/prepare.ts";
import { mlxTestEnv, type MlxTestEnv } from "./helpers/mlx.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

let env: MlxTestEnv;
let srv: TestServer;
let client: OpenAI;
const model = "mlx-qwen2-tiny";
/** The greedy reply to `ask` without a draft. */
let reference = "";

beforeAll(async () => {
  env = await mlxTestEnv();
  srv = await startTestServer(["--python", env.python, "--ctx", "512", "--parallel", "2"]);
  expect((await srv.request("/admin/v1/import", { method: "POST", json: { paths: [env.model] } })).status).toBe(200);
  client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "none", maxRetries: 0 });
}, 600_000);
afterAll(async () => {
  await srv?.[Symbol.asyncDispose]();
});

interface Timings { predicted_n: number; draft_n?: number; draft_n_accepted?: number }
interface Status { parallel: number; speculative: { mode: string; draft: string | null; draft_n: number; draft_n_accepted: number } | null }

async function load(body: object): Promise<Response> {
  return srv.request(`/admin/v1/models/${model}/load`, { method: "POST", json: body });
}

const ask = { model, messages: [{ role: "user" as const, content: "Tell me a story" }], max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 2 };

async function chat() {
  const r = await client.chat.completions.create(ask);
  return {
    text: r.choices[0]!.message.content ?? "",
    tokens: r.choices[0]!.logprobs!.content!.map((t) => [t.token, t.top_logprobs.map((x) => x.token)]),
    cached: r.usage!.prompt_tokens_details?.cached_tokens ?? 0,
    timings: (r as unknown as { timings: Timings }).timings,
  };
}

describe("MLX speculative decoding with a draft model", () => {
  test("greedy output with the fixture drafting for itself is the same as without, drafts accepted and counted", async () => {
    const plainLoad = await load({});
    expect(plainLoad.status).toBe(200);
    expect(((await plainLoad.json()) as Status).speculative).toBeNull();
    const plain = await chat();
    expect(plain.timings.draft_n).toBeUndefined();

    reference = plain.text;
    const res = await load({ draft: model });
    expect(res.status).toBe(200);
    const status = (await res.json()) as Status;
    expect(status.speculative).toEqual({ mode: "draft", draft: model, draft_n: 0, draft_n_accepted: 0 });
    expect(status.parallel).toBe(1);

    const drafted = await chat();
    expect(drafted.text).toBe(plain.text);
    expect(drafted.tokens).toEqual(plain.tokens);
    expect(drafted.timings.predicted_n).toBe(12);
    expect(drafted.timings.draft_n_accepted!).toBeGreaterThan(0);
    expect(drafted.timings.draft_n!).toBeGreaterThanOrEqual(drafted.timings.draft_n_accepted!);

    // The same conversation again: both models' KV come from the prompt cache.
    const again = await chat();
    expect(again.text).toBe(plain.text);
    expect(again.cached).toBeGreaterThan(0);

    const after = (await (await srv.request(`/admin/v1/models/${model}`)).json()) as Status;
    expect(after.speculative).toEqual({
      mode: "draft", draft: model,
      draft_n: drafted.timings.draft_n! + again.timings.draft_n!, draft_n_accepted: drafted.timings.draft_n_accepted! + again.timings.draft_n_accepted!,
    });
  }, 120_000);

  test("stop strings and cancellation end a drafted generation; the next request is served", async () => {
    const stop = reference.slice(3, 6);
    const cut = await client.chat.completions.create({ ...ask, stop: [stop] });
    expect(cut.choices[0]!.message.content).toBe(reference.slice(0, reference.indexOf(stop)));
    expect(cut.choices[0]!.finish_reason).toBe("stop");
    expect((cut as unknown as { timings: Timings }).timings.draft_n!).toBeGreaterThan(0);

    const controller = new AbortController();
    const stream = await client.chat.completions.create({ ...ask, max_tokens: 400, stream: true }, { signal: controller.signal });
    let chunks = 0;
    await (async () => {
      for await (const _ of stream) {
        chunks++;
        controller.abort();
      }
    })().catch(() => undefined);
    expect(chunks).toBeLessThan(20);
    const next = await chat();
    expect(next.text).toBe(reference);
    expect(next.timings.draft_n_accepted!).toBeGreaterThan(0);
  }, 120_000);

  test("prompt lookup is refused for MLX models with a 400 that says why", async () => {
    const res = await load({ speculative: "lookup" });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; param: string; message: string } };
    expect([body.error.code, body.error.param]).toEqual(["unsupported_parameter", "speculative"]);
    expect(body.error.message).toContain("no prompt-lookup");
  });
});

test("the worker's own vocabulary check (mlx-lm's tokenizers, after the server's tokenizer.json one): sizes, then every token", async () => {
  const script = `
import protocol
from speculative import vocabulary_mismatch

class Tok:
    def __init__(self, tokens, vocab_size=None):
        self.tokens = tokens
        self.vocab_size = vocab_size if vocab_size is not None else len(tokens)
    def __len__(self):
        return len(self.tokens)
    def get_vocab(self):
        return {t: i for i, t in enumerate(self.tokens)}

a = Tok(["a", "b", "c", "<end>"])
protocol.send([vocabulary_mismatch(a, Tok(["a", "b", "c", "<end>"])), vocabulary_mismatch(a, Tok(["a", "b", "c", "<end>", "<x>"])),
               vocabulary_mismatch(a, Tok(["a", "B", "c", "<end>"])), vocabulary_mismatch(a, Tok(["a", "b", "c", "<end>"], 9))])
`;
  const proc = Bun.spawn([env.python, "-c", script], { cwd: join(REPO_ROOT, "native", "mlx_worker"), stdout: "pipe", stderr: "inherit" });
  const out = await new Response(proc.stdout).text();
  expect(await proc.exited).toBe(0);
  expect(JSON.parse(out)).toEqual([null, "vocabulary sizes differ (4 vs 5 tokens)", "token 1 differs", "base vocabulary sizes differ (4 vs 9)"]);
});

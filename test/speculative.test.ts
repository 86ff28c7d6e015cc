// Speculative decoding on a real server with the real (CPU) engine, through the official OpenAI
// SDK: prompt lookup on the copy model (it repeats its prompt, so most drafts are right) and a
// draft model (stories260K drafting for itself), each giving byte-identical greedy output to plain
// decoding while reporting accepted drafts; a draft with another vocabulary is refused with a 400.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { ensureCopyModel } from "./fixtures/copy-model.ts";
import { ensureFixtures } from "./fixtures/models.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const fx = ensureFixtures();
const copy = await ensureCopyModel();
let srv: TestServer;
let client: OpenAI;

beforeAll(async () => {
  srv = await startTestServer(["--model", `copy=${copy.gguf}`, "--model", fx.stories260K, "--model", `qwen=${fx.qwen2Tiny}`, "--ctx", "512", "--parallel", "1"]);
  client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "none", maxRetries: 0 });
});
afterAll(async () => {
  await srv[Symbol.asyncDispose]();
});

interface Timings { predicted_n: number; draft_n?: number; draft_n_accepted?: number }
interface Status { speculative: { mode: string; draft: string | null; draft_n: number; draft_n_accepted: number } | null }
type Error400 = { error: { message: string; code: string | null; param: string | null } };

async function load(id: string, body: object): Promise<Response> {
  return srv.request(`/admin/v1/models/${id}/load`, { method: "POST", json: body });
}

async function loaded(id: string, body: object): Promise<Status> {
  const res = await load(id, body);
  expect(res.status).toBe(200);
  return (await res.json()) as Status;
}

async function complete(model: string, prompt: string, maxTokens: number): Promise<{ text: string; timings: Timings }> {
  const r = await client.completions.create({ model, prompt, max_tokens: maxTokens, temperature: 0 });
  return { text: r.choices[0]!.text, timings: (r as unknown as { timings: Timings }).timings };
}

// A passage of one-token words in random order, other text, then the passage's first words again:
// the copy model (trained on such repeats) continues the passage, and prompt lookup finds it.
const passage = "saw they she nam very happ upon his friend his she was you her big friend and the day play big happy happ day for little there day her fri and but";
const copyPrompt = `${passage}. The harbour town woke slowly on winter mornings. saw they she nam`;

describe("speculative decoding", () => {
  test("prompt lookup on the copy model: the same greedy text as plain decoding, drafts accepted", async () => {
    expect((await loaded("copy", { speculative: "off" })).speculative).toBeNull();
    const plain = await complete("copy", copyPrompt, 64);
    expect(plain.timings.draft_n).toBeUndefined();
    // It does copy: the continuation is the passage's next words.
    expect(plain.text).toStartWith(" very happ upon his friend his she was");

    expect((await loaded("copy", { speculative: "lookup" })).speculative).toEqual({ mode: "lookup", draft: null, draft_n: 0, draft_n_accepted: 0 });
    const fast = await complete("copy", copyPrompt, 64);
    expect(fast.text).toBe(plain.text);
    expect(fast.timings.draft_n_accepted!).toBeGreaterThan(0);
    expect(fast.timings.draft_n!).toBeGreaterThanOrEqual(fast.timings.draft_n_accepted!);
    // Accepted drafts replace decode steps, never add tokens.
    expect(fast.timings.draft_n_accepted!).toBeLessThan(fast.timings.predicted_n);
    // More than one accepted per step: at most one would leave at least as many steps as accepted
    // drafts (node-llama-cpp refuted every draft after a step's first until patched).
    expect(fast.timings.draft_n_accepted!).toBeGreaterThan(fast.timings.predicted_n / 2);

    const status = (await (await srv.request("/admin/v1/models/copy")).json()) as Status;
    expect(status.speculative).toEqual({ mode: "lookup", draft: null, draft_n: fast.timings.draft_n!, draft_n_accepted: fast.timings.draft_n_accepted! });
    const metrics = await (await srv.request("/metrics")).text();
    expect(metrics).toContain(`lmx_draft_accepted_tokens_total{model="copy"} ${fast.timings.draft_n_accepted}`);
  });

  test("a draft model with the same vocabulary (stories260K for itself): identical greedy chat and text", async () => {
    await loaded("stories260K", {});
    const messages = [{ role: "user" as const, content: "Once upon a time" }];
    const plainChat = await client.chat.completions.create({ model: "stories260K", messages, max_tokens: 48, temperature: 0 });
    const plainText = await complete("stories260K", "Lily and Tom went to the park.", 48);

    // The draft alone implies the mode.
    expect((await loaded("stories260K", { draft: "stories260K" })).speculative).toEqual({ mode: "draft", draft: "stories260K", draft_n: 0, draft_n_accepted: 0 });
    const chat = await client.chat.completions.create({ model: "stories260K", messages, max_tokens: 48, temperature: 0 });
    expect(chat.choices[0]!.message.content).toBe(plainChat.choices[0]!.message.content);
    const chatTimings = (chat as unknown as { timings: Timings }).timings;
    expect(chatTimings.draft_n_accepted!).toBeGreaterThan(0);
    const text = await complete("stories260K", "Lily and Tom went to the park.", 48);
    expect(text.text).toBe(plainText.text);
    expect(text.timings.draft_n_accepted!).toBeGreaterThan(0);
  });

  test("streamed chat with a draft model: the same text, the counts in the usage chunk's timings", async () => {
    const messages = [{ role: "user" as const, content: "Once upon a time" }];
    const plain = await client.chat.completions.create({ model: "stories260K", messages, max_tokens: 32, temperature: 0 });
    const stream = await client.chat.completions.create({ model: "stories260K", messages, max_tokens: 32, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let timings: Timings | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      timings ??= (chunk as unknown as { timings?: Timings }).timings;
    }
    expect(text).toBe(plain.choices[0]!.message.content!);
    expect(timings?.draft_n_accepted).toBeGreaterThan(0);
  });

  test("a token bias (ignore_eos) with a draft model: the same text as without the draft, in full", async () => {
    // The bias belongs to the target's tokenizer: handed to the draft, node-llama-cpp threw and the generation hung.
    const body = { model: "stories260K", prompt: "The end.", max_tokens: 40, temperature: 0, ignore_eos: true } as const;
    const drafted = await client.completions.create(body);
    expect(drafted.usage!.completion_tokens).toBe(40);
    await loaded("stories260K", { speculative: "off" });
    const plain = await client.completions.create(body);
    expect(drafted.choices[0]!.text).toBe(plain.choices[0]!.text);
    await loaded("stories260K", { draft: "stories260K" });
  });

  test("a JSON schema with a draft model: several drafts per step follow the grammar, the same JSON as without", async () => {
    const schema = { type: "object", properties: { name: { type: "string" }, age: { type: "integer" } }, required: ["name", "age"] };
    const ask = () => client.chat.completions.create({
      model: "stories260K", messages: [{ role: "user", content: "Tell me about Lily." }], max_tokens: 60, temperature: 0,
      response_format: { type: "json_schema", json_schema: { name: "person", schema } },
    });
    const drafted = await ask();
    expect((drafted as unknown as { timings: Timings }).timings.draft_n_accepted).toBeGreaterThan(1);
    await loaded("stories260K", { speculative: "off" });
    const plain = await ask();
    expect(JSON.parse(drafted.choices[0]!.message.content!)).toHaveProperty("age");
    expect(drafted.choices[0]!.message.content).toBe(plain.choices[0]!.message.content);
    await loaded("stories260K", { draft: "stories260K" });
  });

  test("sampling with a draft model still answers in full", async () => {
    const r = await client.completions.create({ model: "stories260K", prompt: "Once upon a time", max_tokens: 24, temperature: 0.8, seed: 7 });
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
    expect((r as unknown as { timings: Timings }).timings.draft_n).toBeGreaterThanOrEqual(0);
  });

  test("a draft with another vocabulary is a 400 naming both models, and the model stays as it was", async () => {
    const res = await load("stories260K", { speculative: "draft", draft: "qwen" });
    expect(res.status).toBe(400);
    const body = (await res.json()) as Error400;
    expect(body.error.code).toBe("draft_vocabulary_mismatch");
    expect(body.error.param).toBe("draft");
    expect(body.error.message).toContain("'qwen'");
    expect(body.error.message).toContain("'stories260K'");
    const status = (await (await srv.request("/admin/v1/models/stories260K")).json()) as Status & { state: string };
    expect(status.state).toBe("ready");
    expect(status.speculative?.draft).toBe("stories260K");
  });

  test("bad settings are 400s: an unknown mode, draft mode without a draft, an unknown draft, a path from the API", async () => {
    for (const [body, code] of [
      [{ speculative: "sideways" }, null],
      [{ speculative: "draft" }, "draft_model_missing"],
      [{ draft: "no-such-model" }, "model_not_found"],
      [{ draft: fx.stories260K }, "model_not_found"],
      [{ draft: "" }, null],
      [{ draft: "x".repeat(5000) }, null],
    ] as const) {
      const res = await load("copy", body);
      expect(res.status).toBe(400);
      if (code !== null) expect(((await res.json()) as Error400).error.code).toBe(code);
    }
  });
});

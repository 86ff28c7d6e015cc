// Prompt tokens served from the cache, as the official SDKs read them, on a real server with the
// real engine (stories260K, one thread). llama.cpp keeps a sequence's tokens between requests;
// a prompt that starts with them evaluates only the rest, and usage says how many were kept.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { ensureFixtures } from "./fixtures/models.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const fx = ensureFixtures();
let srv: TestServer;
let openai: OpenAI;
let anthropic: Anthropic;

beforeAll(async () => {
  // Two sequences: a follow-up must find the one holding its conversation.
  // No saved states: these tests are about the live sequences alone.
  srv = await startTestServer(["--model", fx.stories260K, "--ctx", "512", "--parallel", "2", "--prompt-cache-size", "0"]);
  openai = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "none", maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: srv.url, apiKey: "none", maxRetries: 0 });
});
afterAll(async () => {
  await srv[Symbol.asyncDispose]();
});

/** A fresh load: no sequence holds anything, so nothing can come from the cache. */
async function reload(): Promise<void> {
  expect((await srv.request("/admin/v1/models/stories260K/unload", { method: "POST" })).status).toBe(200);
}

const STORY = "Once upon a time there was a little girl named Lily. She loved to play in the park with her dog.";

describe("cached prompt tokens on llama.cpp", () => {
  test("OpenAI chat: 0 at first, all but the last token for the same prompt, most of a longer conversation", async () => {
    await reload();
    const ask = (messages: OpenAI.ChatCompletionMessageParam[]) => openai.chat.completions.create({ model: "stories260K", messages, max_tokens: 12, temperature: 0 });
    const first = await ask([{ role: "user", content: STORY }]);
    expect(first.usage!.prompt_tokens).toBeGreaterThan(20);
    expect(first.usage!.prompt_tokens_details!.cached_tokens).toBe(0);

    // The whole prompt is in the sequence, but the model needs the last token evaluated again to predict what follows it.
    const same = await ask([{ role: "user", content: STORY }]);
    expect(same.usage!.prompt_tokens).toBe(first.usage!.prompt_tokens);
    expect(same.usage!.prompt_tokens_details!.cached_tokens).toBe(first.usage!.prompt_tokens - 1);

    const reply = same.choices[0]!.message.content!;
    const next = await ask([{ role: "user", content: STORY }, { role: "assistant", content: reply }, { role: "user", content: "What did the dog do next?" }]);
    const cached = next.usage!.prompt_tokens_details!.cached_tokens!;
    // At least the first prompt (the conversation up to the reply) comes from the cache, and never the whole prompt.
    expect(cached).toBeGreaterThanOrEqual(first.usage!.prompt_tokens);
    expect(cached).toBeLessThan(next.usage!.prompt_tokens);
  });

  test("a new conversation takes the least recently used sequence, not the one holding the last conversation", async () => {
    await reload();
    const ask = (content: string) => openai.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content }], max_tokens: 8, temperature: 0 });
    const first = await ask(STORY);
    // Shares only the template's first tokens with the story: the idle sequence serves it.
    await ask("The sun was hot. Tom and his cat went to the river to swim and eat cake.");
    const again = await ask(STORY);
    expect(again.usage!.prompt_tokens_details!.cached_tokens).toBe(first.usage!.prompt_tokens - 1);
  });

  test("OpenAI completions: a prompt that extends the last one reuses it", async () => {
    await reload();
    const first = await openai.completions.create({ model: "stories260K", prompt: STORY, max_tokens: 4, temperature: 0 });
    expect(first.usage!.prompt_tokens_details?.cached_tokens).toBe(0);
    const longer = await openai.completions.create({ model: "stories260K", prompt: STORY + " One day", max_tokens: 4, temperature: 0 });
    const cached = longer.usage!.prompt_tokens_details!.cached_tokens!;
    // The shared text's tokens, up to where " One day" changed the last of them at most.
    expect(cached).toBeGreaterThanOrEqual(first.usage!.prompt_tokens - 1);
    expect(cached).toBeLessThan(longer.usage!.prompt_tokens);
    const same = await openai.completions.create({ model: "stories260K", prompt: STORY + " One day", max_tokens: 4, temperature: 0 });
    expect(same.usage!.prompt_tokens_details!.cached_tokens).toBe(same.usage!.prompt_tokens - 1);
  });

  test("Anthropic: cache_read_input_tokens, with input_tokens the rest of the prompt", async () => {
    await reload();
    const ask = (messages: Anthropic.MessageParam[]) => anthropic.messages.create({ model: "stories260K", max_tokens: 12, messages, temperature: 0 } as Anthropic.MessageCreateParamsNonStreaming);
    const first = await ask([{ role: "user", content: STORY }]);
    expect(first.usage.cache_read_input_tokens).toBe(0);
    expect(first.usage.cache_creation_input_tokens).toBe(0);
    const prompt = first.usage.input_tokens;
    const same = await ask([{ role: "user", content: STORY }]);
    expect(same.usage).toMatchObject({ input_tokens: 1, cache_read_input_tokens: prompt - 1, cache_creation_input_tokens: 0 });

    const reply = same.content.flatMap((b) => (b.type === "text" ? [b.text] : [])).join("");
    const stream = anthropic.messages.stream({
      model: "stories260K", max_tokens: 12, temperature: 0,
      messages: [{ role: "user", content: STORY }, { role: "assistant", content: reply }, { role: "user", content: "What did the dog do next?" }],
    } as Anthropic.MessageStreamParams);
    const next = await stream.finalMessage();
    expect(next.usage.cache_read_input_tokens!).toBeGreaterThanOrEqual(prompt);
    expect(next.usage.input_tokens).toBeGreaterThan(0);
  });

  test("Prometheus: lmx_prompt_cached_tokens_total grows by what usage reported", async () => {
    const scrape = async () => {
      const text = await (await srv.request("/metrics")).text();
      return Number(/^lmx_prompt_cached_tokens_total\{model="stories260K"\} (\d+)$/m.exec(text)?.[1] ?? "0");
    };
    const ask = () => openai.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: STORY }], max_tokens: 4, temperature: 0 });
    // A sequence now holds the story and 4 tokens: the same request again reuses it.
    await ask();
    const before = await scrape();
    const r = await ask();
    expect(r.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(0);
    expect(await scrape()).toBe(before + r.usage!.prompt_tokens_details!.cached_tokens!);
  });
});

/** The state files the server has saved, in every process folder under its home. */
function savedFiles(home: string): string[] {
  const root = join(home, "prompt-cache");
  let dirs: string[];
  try {
    dirs = readdirSync(root);
  } catch {
    return [];
  }
  return dirs.flatMap((d) => readdirSync(join(root, d)));
}

describe("saved prompt states on llama.cpp: more conversations than sequences", () => {
  const LONG = STORY + " Every day they ran to the big tree and back. One day the dog found a red ball under the tree. Lily was very happy and they played with the ball until the sun went down. Then they went home to eat dinner with mom and dad.";
  const OTHER = "The sun was hot. Tom and his cat went to the river to swim and eat cake.";

  test("a conversation whose only sequence served another one comes back from its saved state, which goes on unload", async () => {
    await using one = await startTestServer(["--model", fx.stories260K, "--ctx", "512", "--parallel", "1"]);
    const client = new OpenAI({ baseURL: one.url + "/v1", apiKey: "none", maxRetries: 0 });
    const ask = (content: string) => client.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content }], max_tokens: 8, temperature: 0 });
    const first = await ask(LONG);
    expect(first.usage!.prompt_tokens).toBeGreaterThan(100);
    expect(savedFiles(one.home)).toEqual([]);
    const other = await ask(OTHER);
    // The other conversation shares the template's first tokens only.
    expect(other.usage!.prompt_tokens_details!.cached_tokens).toBeLessThan(20);
    expect(savedFiles(one.home)).toHaveLength(1);
    const again = await ask(LONG);
    expect(again.usage!.prompt_tokens_details!.cached_tokens).toBe(first.usage!.prompt_tokens - 1);
    expect(again.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect((await one.request("/admin/v1/models/stories260K/unload", { method: "POST" })).status).toBe(200);
    expect(savedFiles(one.home)).toEqual([]);
  });

  test("with --prompt-cache-size 0 nothing is saved and the conversation is evaluated again", async () => {
    await using one = await startTestServer(["--model", fx.stories260K, "--ctx", "512", "--parallel", "1", "--prompt-cache-size", "0"]);
    const client = new OpenAI({ baseURL: one.url + "/v1", apiKey: "none", maxRetries: 0 });
    const ask = (content: string) => client.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content }], max_tokens: 8, temperature: 0 });
    const first = await ask(LONG);
    await ask(OTHER);
    const again = await ask(LONG);
    expect(again.usage!.prompt_tokens_details!.cached_tokens).toBeLessThan(20);
    expect(again.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect(savedFiles(one.home)).toEqual([]);
  });
});

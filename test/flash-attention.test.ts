// Flash attention as a load setting, on a real server with the real (CPU) engine: under "auto"
// stories260K (8-wide attention heads) loads with it off, an explicit choice is honoured and
// reported, and a value outside auto/on/off is a 400.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { ModelRegistry } from "../src/models/registry.ts";
import { ensureFixtures } from "./fixtures/models.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const fx = ensureFixtures();
let srv: TestServer;

beforeAll(async () => {
  srv = await startTestServer(["--model", fx.stories260K, "--ctx", "256", "--parallel", "1"]);
});
afterAll(async () => {
  await srv[Symbol.asyncDispose]();
});

type Status = { id: string; state: string; flash_attention: string | null };

async function load(body: object): Promise<Status> {
  const res = await srv.request("/admin/v1/models/stories260K/load", { method: "POST", json: body });
  expect(res.status).toBe(200);
  return (await res.json()) as Status;
}

const status = async () => (await (await srv.request("/admin/v1/models/stories260K")).json()) as Status;
const ps = async () => ((await (await srv.request("/admin/v1/ps")).json()) as { data: Status[] }).data.find((m) => m.id === "stories260K");

async function generates(): Promise<void> {
  const client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "none", maxRetries: 0 });
  const r = await client.chat.completions.create({ model: "stories260K", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 8, temperature: 0 });
  expect(r.usage!.completion_tokens).toBeGreaterThan(0);
}

describe("flash attention", () => {
  test("not loaded: nothing chosen yet", async () => {
    expect((await status()).flash_attention).toBeNull();
  });

  test("auto (the default) on the CPU: off for stories260K's 8-wide heads", async () => {
    expect((await load({})).flash_attention).toBe("off");
    expect((await status()).flash_attention).toBe("off");
    expect((await ps())?.flash_attention).toBe("off");
    await generates();
  });

  test("an explicit on is honoured: the model loads again with it", async () => {
    expect((await load({ flash_attention: "on" })).flash_attention).toBe("on");
    expect((await status()).flash_attention).toBe("on");
    await generates();
    // Back to auto is a different setting too: loaded again, off again.
    expect((await load({ flash_attention: "auto" })).flash_attention).toBe("off");
  });

  test("saved as a model's default, a JIT load uses it", async () => {
    new ModelRegistry(srv.server.db).upsert({ id: "story-fa", format: "gguf", path: fx.stories260K, origin: "import" });
    const res = await srv.request("/admin/v1/models/story-fa", { method: "PATCH", json: { load_defaults: { flash_attention: "on", context_length: 256 } } });
    expect(res.status).toBe(200);
    const client = new OpenAI({ baseURL: srv.url + "/v1", apiKey: "none", maxRetries: 0 });
    await client.chat.completions.create({ model: "story-fa", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
    expect(((await (await srv.request("/admin/v1/models/story-fa")).json()) as Status).flash_attention).toBe("on");
  });

  test("a value outside auto, on and off is a 400 and changes nothing", async () => {
    const before = (await status()).flash_attention;
    const res = await srv.request("/admin/v1/models/stories260K/load", { method: "POST", json: { flash_attention: "fast" } });
    expect(res.status).toBe(400);
    expect((await status()).flash_attention).toBe(before);
  });
});

// The trained agent model (test/fixtures/agent-model.ts) in both real engines, below the chat
// layer: given each case's prompt as rendered by the model's own template, greedy decoding writes
// exactly the reply the trainer guaranteed — thought, call and end included. The chat tests
// (reasoning-tools.test.ts) rely on this; when one of them fails, this says whether the model or
// LMX's reading of it is at fault. It also shows that /v1/completions reads control tokens written
// in a raw prompt (<|im_start|>) as such, on both engines.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { ensureAgentModel } from "./fixtures/agent-model.ts";
import { mlxTestEnv } from "./helpers/mlx.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const agent = await ensureAgentModel();

describe.each([
  { name: "llama.cpp (GGUF)", model: "agent-qwen3" },
  { name: "MLX", model: "agent-qwen3-mlx" },
] as const)("the agent model on $name", ({ name, model }) => {
  let srv: TestServer;
  let client: OpenAI;
  beforeAll(async () => {
    if (name === "MLX") {
      const env = await mlxTestEnv();
      srv = await startTestServer(["--python", env.python]);
      const imported = await srv.request("/admin/v1/import", { method: "POST", json: { paths: [agent.mlxDir] } });
      expect(imported.status).toBe(200);
    } else {
      srv = await startTestServer(["--model", agent.gguf]);
    }
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: "unused", maxRetries: 0 });
  }, 600_000);
  afterAll(async () => {
    await srv?.[Symbol.asyncDispose]();
  });

  test("writes every guaranteed reply exactly from its rendered prompt, and stops at <|im_end|>", async () => {
    expect(agent.cases.length).toBeGreaterThanOrEqual(8);
    for (const c of agent.cases) {
      const res = await client.completions.create({ model, prompt: c.prompt, temperature: 0, max_tokens: 120 });
      expect({ name: c.name, text: res.choices[0]!.text }).toEqual({ name: c.name, text: c.reply.replace(/<\|im_end\|>$/, "") });
      expect(res.choices[0]!.finish_reason).toBe("stop");
    }
  }, 120_000);
});

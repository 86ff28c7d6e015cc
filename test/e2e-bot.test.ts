import { expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { demoRepos, startFakeHub } from "./hub/fake-hub.ts";
import { startTestServer } from "./helpers/server.ts";

// The definition of done: from an empty $LMX_HOME, a script using only HTTP searches,
// pulls (resuming after a cut), loads, chats, lists, unloads and deletes a model.
test("a bot drives the whole lifecycle over HTTP", async () => {
  await using hub = await startFakeHub({ repos: demoRepos() });
  await using srv = await startTestServer(["--hub-url", hub.url, "--hub-cache", mkdtempSync(join(tmpdir(), "hf-")), "--ctx", "512", "--parallel", "2"]);
  const call = async <T>(method: string, path: string, json?: unknown): Promise<T> => {
    const res = await fetch(srv.url + path, { method, headers: json ? { "content-type": "application/json" } : {}, body: json ? JSON.stringify(json) : undefined });
    expect(res.status).toBeLessThan(300);
    return (await res.json()) as T;
  };

  const found = await call<{ data: { repo: string; fits: boolean; format: string }[] }>("GET", "/admin/v1/hub/search?q=tiny-llamas");
  const pick = found.data.find((r) => r.repo === "ggml-org/tiny-llamas")!;
  expect(pick).toMatchObject({ format: "gguf", fits: true });

  hub.cutAfter({ repo: "ggml-org/tiny-llamas", file: "stories260K.gguf" }, 300_000);
  const job = await call<{ id: string }>("POST", "/admin/v1/downloads", { model: pick.repo });
  let state: { state: string; model_id: string | null } = { state: "queued", model_id: null };
  while (!["done", "failed", "cancelled"].includes(state.state)) {
    await Bun.sleep(50);
    state = await call("GET", `/admin/v1/downloads/${job.id}`);
  }
  expect(state.state).toBe("done");
  expect(hub.transfersFor({ repo: "ggml-org/tiny-llamas", file: "stories260K.gguf" }).at(-1)!.range).toBe("bytes=300000-");
  const model = state.model_id!;

  const loaded = await call<{ state: string; loaded_context_length: number }>("POST", `/admin/v1/models/${model}/load`, { context_length: 256 });
  expect(loaded).toMatchObject({ state: "ready", loaded_context_length: 256 });
  const chat = await call<{ choices: { message: { content: string } }[] }>("POST", "/v1/chat/completions", { model, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 8 });
  expect(chat.choices[0]!.message.content.length).toBeGreaterThan(0);
  const list = await call<{ data: { id: string }[] }>("GET", "/v1/models");
  expect(list.data.map((m) => m.id)).toContain(model);
  const ps = await call<{ data: { id: string }[] }>("GET", "/admin/v1/ps");
  expect(ps.data.map((m) => m.id)).toEqual([model]);
  await call("POST", `/admin/v1/models/${model}/unload`);
  await call("DELETE", `/admin/v1/models/${model}`);
  expect((await fetch(`${srv.url}/v1/models/${model}`)).status).toBe(404);
});

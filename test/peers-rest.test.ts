// Peers beyond generation, end to end: two real `lmx serve` processes on 127.0.0.1 ("laptop" with
// peer "studio", which wants an API key) and a peer nobody answers at ("gone"). Proxied requests
// in the laptop's /metrics, stored responses read, continued and deleted through the laptop with
// the official OpenAI SDK, and Ollama's /api/show and /api/ps for the studio's model.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import OpenAI from "openai";
import { parseExposition } from "./helpers/exposition.ts";
import { serveProcess, type ServeProcess } from "./helpers/serve-process.ts";
import { until } from "./helpers/until.ts";

const MODEL = resolve(import.meta.dir, "..", "../shared/models/stories260K.gguf");
const STUDIO_KEY = "sk-studio";
const homes: string[] = [];
const home = () => {
  const dir = mkdtempSync(join(tmpdir(), "lmx-peers-rest-"));
  homes.push(dir);
  return dir;
};

let studio: ServeProcess;
let laptop: ServeProcess;
let client: OpenAI;
let direct: OpenAI;
const studioAuth = { authorization: `Bearer ${STUDIO_KEY}` };


beforeAll(async () => {
  studio = await serveProcess(home(), ["--model", `b=${MODEL}`, "--api-key", STUDIO_KEY]);
  const laptopHome = home();
  writeFileSync(join(laptopHome, "config.json"), JSON.stringify({
    peers: [{ name: "studio", url: studio.url, apiKey: "env:STUDIO_KEY" }],
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    routes: { chain: ["gone/x", "studio/b"] },
  }));
  laptop = await serveProcess(laptopHome, ["--model", `a=${MODEL}`, "--peer", "gone=http://127.0.0.1:9", "--peer-poll", "1"], { STUDIO_KEY });
  client = new OpenAI({ baseURL: laptop.url + "/v1", apiKey: "unused", maxRetries: 0 });
  direct = new OpenAI({ baseURL: studio.url + "/v1", apiKey: STUDIO_KEY, maxRetries: 0 });
  await until("studio up", async () => {
    const { data } = (await (await laptop.request("/admin/v1/peers")).json()) as { data: { name: string; state: string }[] };
    return data.find((p) => p.name === "studio")?.state === "up";
  });
}, 60_000);

afterAll(() => {
  for (const p of [laptop, studio]) p?.proc.kill("SIGKILL");
  for (const dir of homes) rmSync(dir, { recursive: true, force: true });
});

const scrape = async () => parseExposition(await (await laptop.request("/metrics")).text());

describe("peers: metrics, stored responses, Ollama details", () => {
  test("/metrics counts what went to the studio, its first byte and duration, and the chain's fallback past a down peer", async () => {
    const stream = await client.chat.completions.create({ model: "chain", messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 16, temperature: 0, stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text.length).toBeGreaterThan(0);
    await client.chat.completions.create({ model: "a", messages: [{ role: "user", content: "Once" }], max_tokens: 4 });
    const m = await scrape();
    const labels = { node: "studio", api: "openai.chat" };
    expect(m.value("lmx_peer_requests_total", { ...labels, status: "ok" })).toBe(1);
    expect(m.value("lmx_peer_time_to_first_byte_seconds_count", labels)).toBe(1);
    expect(m.value("lmx_peer_request_duration_seconds_count", labels)).toBe(1);
    expect(m.value("lmx_peer_request_duration_seconds_sum", labels)!).toBeGreaterThanOrEqual(m.value("lmx_peer_time_to_first_byte_seconds_sum", labels)!);
    expect(m.value("lmx_peer_fallbacks_total", { node: "gone", reason: "down" })).toBe(1);
    // The local chat is the local counters' business.
    expect(m.value("lmx_requests_total", { model: "a", api: "openai.chat", status: "ok" })).toBe(1);
    expect(m.samples.filter((s) => s.name === "lmx_peer_requests_total").length).toBe(1);
  });

  test("a response the studio stored is retrieved, listed, continued and deleted through the laptop", async () => {
    const first = await client.responses.create({ model: "b", input: "Once upon a time", max_output_tokens: 8, temperature: 0 });
    expect(first.output_text.length).toBeGreaterThan(0);
    expect((await client.responses.retrieve(first.id)).output_text).toBe(first.output_text);
    expect((await direct.responses.retrieve(first.id)).id).toBe(first.id);
    const second = await client.responses.create({ model: "b", input: "and then", previous_response_id: first.id, max_output_tokens: 8, temperature: 0 });
    expect(second.previous_response_id).toBe(first.id);
    const items = await client.responses.inputItems.list(second.id, { order: "asc" });
    expect(items.data.map((i) => (i as { role?: string }).role)).toEqual(["user", "assistant", "user"]);
    const wrong = await client.responses.create({ model: "a", input: "x", previous_response_id: first.id }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(OpenAI.BadRequestError);
    await client.responses.delete(first.id);
    expect(await direct.responses.retrieve(first.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
    expect(await client.responses.retrieve(first.id).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.NotFoundError);
    expect((await client.responses.retrieve(second.id)).id).toBe(second.id);
    expect((await scrape()).value("lmx_peer_requests_total", { node: "studio", api: "openai.responses.stored", status: "ok" })).toBe(4);
  });

  test("Ollama /api/show for the studio's model is the studio's answer; /api/ps lists it loaded there", async () => {
    const own = (await (await studio.request("/api/show", { method: "POST", headers: { ...studioAuth, "content-type": "application/json" }, body: JSON.stringify({ model: "b" }) })).json()) as Record<string, unknown>;
    const shown = await laptop.request("/api/show", { method: "POST", json: { model: "b" } });
    expect([shown.status, shown.headers.get("x-lmx-node")]).toEqual([200, "studio"]);
    expect(await shown.json()).toEqual(own);
    const ps = (await (await laptop.request("/api/ps")).json()) as { models: { name: string; node: string; context_length: number }[] };
    // Both loaded by the requests before: "a" here, "b" on the studio.
    expect(ps.models.map((m) => [m.name, m.node])).toEqual([["a", "local"], ["b", "studio"]]);
    expect(ps.models[1]!.context_length).toBeGreaterThan(0);
    const gone = await laptop.request("/api/show", { method: "POST", json: { model: "gone/x" } });
    expect([gone.status, await gone.json()]).toEqual([503, { error: expect.stringMatching(/peer gone is down/) }]);
  });
});

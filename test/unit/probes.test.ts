// The bench's client against a local server that streams as llama-server does, including its
// output parser's error chunk, which can end a stream before or after the last asked-for token.
import { afterAll, describe, expect, test } from "bun:test";
import { httpEndpoint, parserRetries, streamCompletion } from "../../src/throughput/probes.ts";

const PARSER_MESSAGE = "The model produced output that does not match the expected Content-only format";
/** Per prompt: how many tokens to stream before the parser's error (undefined: no error). */
const failAfter = new Map<string, number>();
const prompts: string[] = [];

const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(req) {
    const body = (await req.json()) as { prompt: string; max_tokens: number };
    prompts.push(body.prompt);
    const cut = failAfter.get(body.prompt);
    const lines: string[] = [];
    const n = Math.min(body.max_tokens, cut ?? body.max_tokens);
    for (let i = 1; i <= n; i++) lines.push(`data: ${JSON.stringify({ choices: [{ text: ` t${i}` }], timings: { prompt_n: 4, predicted_n: i } })}\n\n`);
    if (cut !== undefined) lines.push(`data: ${JSON.stringify({ error: { code: 500, message: PARSER_MESSAGE } })}\n\n`);
    else lines.push(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 4, completion_tokens: n, prompt_tokens_details: { cached_tokens: 1 } } })}\n\ndata: [DONE]\n\n`);
    return new Response(lines.join(""), { headers: { "content-type": "text/event-stream" } });
  },
});
afterAll(() => server.stop(true));
const ep = httpEndpoint("ref", `http://127.0.0.1:${server.port}`, "m");

describe("streamed completions timed by the bench", () => {
  test("a parser error before the last token repeats the request with a marked prompt", async () => {
    failAfter.set("cut short", 3);
    const before = parserRetries.ref ?? 0;
    const t = await streamCompletion(ep, "cut short", 8);
    expect(t.completionTokens).toBe(8);
    expect(prompts.slice(-2)).toEqual(["cut short", "1cut short"]);
    expect((parserRetries.ref ?? 0) - before).toBe(1);
  });

  test("a parser error after the last token ends the stream as a finish", async () => {
    failAfter.set("whole", 5);
    const before = parserRetries.ref ?? 0;
    const t = await streamCompletion(ep, "whole", 5);
    expect(t.completionTokens).toBe(5);
    expect(prompts.at(-1)).toBe("whole");
    expect(parserRetries.ref ?? 0).toBe(before);
  });

  test("the cached prompt tokens the server reports are kept", async () => {
    const t = await streamCompletion(ep, "plain", 2);
    expect(t.promptTokens).toBe(4);
    expect(t.cachedTokens).toBe(1);
  });
});

// One stream, then N at once, against any OpenAI-compatible server that is already running (LMX or
// llama-server): greedy completions of a fixed length with ignore_eos, timed from the client.
// Prints each rate; the aggregate is all streams' tokens over the wall time of the N requests.
//
//   bun bench/experiments/concurrent-streams.ts BASE_URL MODEL_ID [STREAMS=4] [TOKENS=32]

const [url, model, streamsArg, tokensArg] = process.argv.slice(2);
if (!url || !model) {
  console.error("usage: bun bench/experiments/concurrent-streams.ts BASE_URL MODEL_ID [STREAMS] [TOKENS]");
  process.exit(2);
}
const streams = Number(streamsArg ?? 4);
const tokens = Number(tokensArg ?? 32);

async function complete(i: number): Promise<number> {
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, prompt: `Story number ${i}: once upon a time`, max_tokens: tokens, temperature: 0, ignore_eos: true }),
  });
  const body = (await res.json()) as { usage?: { completion_tokens: number }; error?: unknown };
  if (!body.usage) throw new Error(`request ${i} failed: ${JSON.stringify(body).slice(0, 300)}`);
  return body.usage.completion_tokens;
}

await complete(0);
let started = performance.now();
const one = await complete(1);
console.log(`1 stream: ${((one / (performance.now() - started)) * 1000).toFixed(1)} tok/s`);
started = performance.now();
const all = await Promise.all(Array.from({ length: streams }, (_, i) => complete(i + 2)));
console.log(`${streams} streams: ${((all.reduce((a, n) => a + n, 0) / (performance.now() - started)) * 1000).toFixed(1)} tok/s aggregate`);
export {};

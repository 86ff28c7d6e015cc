// The measurements behind `lmx bench` and `bun run bench`: plain HTTP against any server with an
// OpenAI-style /v1/completions (LMX, llama.cpp's llama-server), timed on the client, so both
// servers are measured by the same code. Requests ask for greedy sampling, a fixed seed and
// `ignore_eos` (llama-server's field, which LMX also accepts), so every run generates exactly the
// tokens asked for. What each figure counts and times is defined in figures.ts.

import { generationRate, prefillRate } from "./figures.ts";

export interface Endpoint {
  /** Shown in reports ("lmx", "llama-server"). */
  label: string;
  model: string;
  /** POSTs a JSON body to /v1/completions; resolves to the (successful) response. */
  complete(body: object): Promise<Response>;
}

export class BenchHttpError extends Error {
  override name = "BenchHttpError";
}

/** An endpoint reached with plain fetch (an optional bearer token). */
export function httpEndpoint(label: string, baseUrl: string, model: string, token?: string): Endpoint & { baseUrl: string } {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  return {
    label,
    model,
    baseUrl,
    async complete(body) {
      let res: Response;
      for (let attempt = 0; ; attempt++) {
        try {
          res = await fetch(`${baseUrl}/v1/completions`, { method: "POST", headers, body: JSON.stringify(body) });
          break;
        } catch (err) {
          // A pooled keep-alive connection the server closed while idle: reconnect (no response came).
          if (attempt >= 2 || (err as { code?: string }).code !== "ECONNRESET") throw err;
        }
      }
      if (!res.ok) {
        const text = await res.text().catch(() => "");
        throw new BenchHttpError(`${label}: POST /v1/completions answered ${res.status}: ${text.slice(0, 300)}`);
      }
      return res;
    },
  };
}

export interface StreamTiming {
  promptTokens: number;
  /**
   * Prompt tokens the server says it took from its cache instead of evaluating
   * (`usage.prompt_tokens_details.cached_tokens`; 0 when it does not say).
   */
  cachedTokens: number;
  completionTokens: number;
  /** Request sent → first streamed text. */
  ttftMs: number;
  /** Request sent → stream closed. */
  totalMs: number;
  /** Absolute times (performance.now()) of the request, first text and end of stream. */
  startAt: number;
  firstAt: number;
  endAt: number;
}

const SEED = 1234;

function body(ep: Endpoint, prompt: string, maxTokens: number, stream: boolean): object {
  return {
    model: ep.model,
    prompt,
    max_tokens: maxTokens,
    temperature: 0,
    seed: SEED,
    ignore_eos: true,
    // llama-server extension (LMX ignores it): prompt and generated token counts in every chunk,
    // so counts stay exact even when its output parser rejects a random model's final text.
    timings_per_token: true,
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
  };
}

interface Usage { prompt_tokens?: number; completion_tokens?: number; prompt_tokens_details?: { cached_tokens?: number } }
interface Chunk { choices?: { text?: string }[]; usage?: Usage; timings?: { prompt_n?: number; predicted_n?: number } }

/**
 * llama-server runs its chat-output parser on /v1/completions too, and fails a request whose text
 * does not parse (random-weight models end mid-character, or write something it takes for markup).
 * After the last asked-for token such an error ends the stream like a normal finish; before it, the
 * request was cut short, and is repeated (see streamCompletion).
 */
const PARSER_ERROR = /does not match the expected .* format/;

class ParserRejectedError extends BenchHttpError {}

/** Requests llama-server's output parser cut short (see PARSER_ERROR). */
export const parserRetries: Record<string, number> = {};

/**
 * One streamed completion, timed from the request to the first text and to the end of the stream.
 * When llama-server's output parser kills a request before its last token, the same request is
 * repeated with a marked prompt of the same length (counted in `parserRetries`).
 */
export async function streamCompletion(ep: Endpoint, prompt: string, maxTokens: number): Promise<StreamTiming> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await streamOnce(ep, attempt === 0 ? prompt : `${attempt}${prompt}`, maxTokens);
    } catch (err) {
      if (!(err instanceof ParserRejectedError) || attempt >= 8) throw err;
      parserRetries[ep.label] = (parserRetries[ep.label] ?? 0) + 1;
    }
  }
}

async function streamOnce(ep: Endpoint, prompt: string, maxTokens: number): Promise<StreamTiming> {
  const startAt = performance.now();
  const res = await ep.complete(body(ep, prompt, maxTokens, true));
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let firstAt: number | undefined;
  let usage: Usage | undefined;
  let textEvents = 0;
  let streamedTokens = 0;
  let promptN: number | undefined;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const now = performance.now();
    buf += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buf.indexOf("\n\n")) !== -1) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data) as Chunk & { error?: { message?: string } };
        if (chunk.error) {
          if (PARSER_ERROR.test(chunk.error.message ?? "")) {
            if (streamedTokens >= maxTokens) continue;
            throw new ParserRejectedError(`${ep.label}: ${chunk.error.message} (after ${streamedTokens} of ${maxTokens} tokens)`);
          }
          throw new BenchHttpError(`${ep.label}: stream error: ${chunk.error.message ?? data}`);
        }
        if (chunk.usage) usage = chunk.usage;
        if (typeof chunk.timings?.predicted_n === "number") streamedTokens = Math.max(streamedTokens, chunk.timings.predicted_n);
        if (typeof chunk.timings?.prompt_n === "number") promptN ??= chunk.timings.prompt_n;
        if (chunk.choices?.some((c) => (c.text ?? "").length > 0)) {
          textEvents++;
          firstAt ??= now;
        }
      }
    }
  }
  const endAt = performance.now();
  return {
    promptTokens: usage?.prompt_tokens ?? promptN ?? Number.NaN,
    cachedTokens: usage?.prompt_tokens_details?.cached_tokens ?? 0,
    completionTokens: usage?.completion_tokens ?? (streamedTokens || textEvents),
    ttftMs: (firstAt ?? endAt) - startAt,
    totalMs: endAt - startAt,
    startAt,
    firstAt: firstAt ?? endAt,
    endAt,
  };
}

/** One completion, end to end (streamed, so both servers report token counts the same way). */
export async function completion(ep: Endpoint, prompt: string, maxTokens: number): Promise<{ ms: number; promptTokens: number; completionTokens: number }> {
  const t = await streamCompletion(ep, prompt, maxTokens);
  return { ms: t.totalMs, promptTokens: t.promptTokens, completionTokens: t.completionTokens };
}

// Common short English words: one token each (with their leading space) in most vocabularies.
const WORDS = (
  "the of and to in is was that for it as with his he on be at by had not are but from or have an they which one you were her all she " +
  "there would their we him been has when who will more no if out so said what up its about into than them can only other new some could " +
  "time these two may then do first any my now such like our over man me even most made after also did many before must through back years " +
  "where much your way well down should because each just those people how too little state good very make world still own see men work long " +
  "get here between both life being under never day same another know while last might us great old year off come since against go came right"
).split(" ");

/**
 * A prompt of about `words` tokens that shares at most its first token or two with another
 * nonce's prompt, so neither server can take much of it from a prompt cache. It starts with the
 * nonce in letters, least significant first: consecutive nonces differ from the first letter on.
 * (Written as digits, most significant first, consecutive nonces shared their leading digits, and
 * llama-server served 6–14 tokens of a 34-token prompt from its slots on stories260K.)
 */
export function prompt(nonce: number, words: number): string {
  let x = (nonce * 2654435761 + 97) >>> 0;
  const out: string[] = [`${nonceLetters(nonce)}.`];
  for (let i = 0; i < words; i++) {
    // xorshift32: a fixed, seed-determined word sequence.
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out.push(WORDS[x % WORDS.length]!);
  }
  return out.join(" ");
}

/** `nonce` (a non-negative integer) in base 26 as the letters a–z, least significant first. */
function nonceLetters(nonce: number): string {
  let out = "";
  let n = Math.max(0, Math.floor(nonce));
  do {
    out += String.fromCharCode(97 + (n % 26));
    n = Math.floor(n / 26);
  } while (n > 0);
  return out;
}

/** Word count whose prompt the server tokenizes to about `tokens` tokens (measured with 1-token requests). */
export async function wordsForTokens(ep: Endpoint, tokens: number): Promise<number> {
  // Tokens per word differ a lot between vocabularies (2.2 for a 512-token one): measure first.
  const probeWords = Math.min(64, tokens);
  const first = (await completion(ep, prompt(899_999, probeWords), 1)).promptTokens;
  let words = Number.isFinite(first) && first > 0 ? Math.max(1, Math.round((probeWords * tokens) / first)) : tokens;
  for (let i = 0; i < 4; i++) {
    const { promptTokens } = await completion(ep, prompt(900_000 + i, words), 1);
    if (!Number.isFinite(promptTokens) || promptTokens <= 0) return words;
    if (Math.abs(promptTokens - tokens) <= Math.max(2, tokens * 0.01)) return words;
    words = Math.max(1, Math.round((words * tokens) / promptTokens));
  }
  return words;
}

export interface DecodeResult { tokensPerSecond: number; tokens: number; ms: number }

/** Single-stream decode speed (figure "decode"). */
export async function decode(ep: Endpoint, nonce: number, promptWords: number, tokens: number): Promise<DecodeResult> {
  const t = await streamCompletion(ep, prompt(nonce, promptWords), tokens);
  return { tokensPerSecond: generationRate([t]), tokens: t.completionTokens, ms: t.endAt - t.firstAt };
}

export interface PrefillResult { tokensPerSecond: number; promptTokens: number; cachedTokens: number; ttftMs: number }

/** Prompt processing speed (figures "prefill256", "prefill2048"). */
export async function prefill(ep: Endpoint, nonce: number, promptWords: number): Promise<PrefillResult> {
  const t = await streamCompletion(ep, prompt(nonce, promptWords), 1);
  return { tokensPerSecond: prefillRate(t), promptTokens: t.promptTokens, cachedTokens: t.cachedTokens, ttftMs: t.ttftMs };
}

/** Time to first token of a short streamed request. */
export async function ttft(ep: Endpoint, nonce: number, promptWords: number): Promise<{ ms: number; cachedTokens: number }> {
  const t = await streamCompletion(ep, prompt(nonce, promptWords), 2);
  return { ms: t.ttftMs, cachedTokens: t.cachedTokens };
}

export interface ConcurrentResult {
  streams: number;
  /** Figure "aggregate<N>": the decode rate's definition applied to all streams together. */
  aggregateTokensPerSecond: number;
  tokens: number;
  wallMs: number;
  /** Median time to first token across the streams. */
  ttftMs: number;
}

/** `streams` streamed requests at once, each generating `tokens` tokens. */
export async function concurrent(ep: Endpoint, nonce: number, streams: number, promptWords: number, tokens: number): Promise<ConcurrentResult> {
  const start = performance.now();
  const runs = await Promise.all(Array.from({ length: streams }, (_, i) => streamCompletion(ep, prompt(nonce * 100 + i, promptWords), tokens)));
  const end = Math.max(...runs.map((r) => r.endAt));
  const total = runs.reduce((a, r) => a + r.completionTokens, 0);
  const ttfts = runs.map((r) => r.ttftMs).sort((a, b) => a - b);
  return {
    streams,
    aggregateTokensPerSecond: generationRate(runs),
    tokens: total,
    wallMs: end - start,
    ttftMs: ttfts[Math.floor(ttfts.length / 2)]!,
  };
}

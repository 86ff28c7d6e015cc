// The one stream of events a generation produces. Engines push them as they happen; the core
// service adds the watchdog and error handling; each API adapter turns them into its wire format
// (streamed) or folds them with `collect.ts` (not streamed).
//
// Why a push callback and not an async iterable: it runs once per token on the hottest path, and a
// plain call costs nothing beyond the event object, where an iterator would cost a promise and a
// microtask hop per token. Consumers that want an iterator can wrap the callback.
//
// Order of a successful generation: any of text / reasoning / tool-call / logprobs / progress
// events, then `usage`, then `finish` (last). A failed one ends with `error` instead (emitted by
// the core service; engines reject their promise and never emit `error` themselves).

export type FinishReason = "stop" | "length" | "tool_calls";

export interface Usage {
  promptTokens: number;
  /** Every generated token: answer, reasoning and tool calls. */
  completionTokens: number;
  /** Of completionTokens, those spent thinking (0 for models that do not think). */
  reasoningTokens?: number;
  /** Of promptTokens, those served from the prompt cache. */
  cachedTokens?: number;
  /** Tokens drafted by speculative decoding and checked by the model (absent when it is off). */
  draftTokens?: number;
  /** Of draftTokens, those the model accepted (each one a decode step saved). */
  draftAcceptedTokens?: number;
}

export interface Timings {
  /** Milliseconds spent evaluating the prompt, up to the first generated token. */
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

export interface TokenLogprob {
  token: string;
  /** The token's UTF-8 bytes (a token can be part of a character). */
  bytes?: number[];
  /** Null only for the first token of an echoed prompt, which nothing before it predicts. */
  logprob: number | null;
  /** The most likely alternatives at this position, most likely first. */
  top: { token: string; logprob: number }[];
}

export type GenerationEvent =
  /** Answer text, final: never a partial UTF-8 character, never part of a stop string. */
  | { type: "text"; text: string }
  /** The model's thinking, kept apart from the answer. */
  | { type: "reasoning"; text: string }
  /** A tool call begins; `index` counts calls within this generation from 0. */
  | { type: "tool_call_start"; index: number; id: string; name: string }
  /** A fragment of the call's JSON arguments; the fragments of one call concatenate to its arguments. */
  | { type: "tool_call_delta"; index: number; arguments: string }
  | { type: "tool_call_end"; index: number }
  | { type: "logprobs"; tokens: TokenLogprob[] }
  /** A batch of the prompt was evaluated: the generation is alive though it has no output yet. */
  | { type: "progress" }
  | { type: "usage"; usage: Usage; timings: Timings }
  /** `stopSequence`: the request's stop string that ended the reply, when one did. */
  | { type: "finish"; reason: FinishReason; stopSequence?: string }
  | { type: "error"; error: Error };

export type EventSink = (event: GenerationEvent) => void;

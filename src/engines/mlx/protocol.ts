// The message format between LMX and its MLX worker (native/mlx_worker/), version 4 (2: stop strings
// left the worker for the core; `end` finishes a generation early without an error. 3: thinking
// and tool calls stream as they are written: `reasoning`, `tool_text`, `tool_end`. 4: `load` may
// name a draft model for speculative decoding; `done` then counts the drafted tokens).
//
// Newline-delimited JSON over the worker's stdin (LMX → worker) and stdout (worker → LMX); stderr
// is log text. The worker speaks first with `hello`, naming the protocol version; LMX refuses a
// worker whose version differs (an old runtime folder with a new lmx, say). Requests carry an `id`
// chosen by LMX and every reply or event about a request repeats it. docs/mlx.md has the full
// table; the schemas below are the definition, and every message received is validated against
// them (the worker validates what it receives the same way).

import * as v from "valibot";

export const PROTOCOL_VERSION = 5;

const id = v.pipe(v.string(), v.minLength(1), v.maxLength(200));
const count = v.pipe(v.number(), v.integer(), v.minValue(0));
const ms = v.pipe(v.number(), v.minValue(0));

// ---- LMX → worker ----

const WireMessage = v.object({
  role: v.picklist(["system", "user", "assistant", "tool"]),
  content: v.string(),
  tool_call_id: v.optional(v.string()),
  tool_calls: v.optional(v.array(v.object({ id: v.string(), name: v.string(), arguments: v.string() }))),
  /** An earlier assistant turn's thinking, rendered as its template does (reasoning_content). */
  reasoning: v.optional(v.string()),
});
export type WireMessage = v.InferOutput<typeof WireMessage>;

const WireTool = v.object({
  name: v.string(),
  description: v.optional(v.string()),
  parameters: v.optional(v.record(v.string(), v.unknown())),
});
export type WireTool = v.InferOutput<typeof WireTool>;

const finite = v.pipe(v.number(), v.finite());

export const ToWorker = v.variant("type", [
  v.object({
    type: v.literal("load"),
    id,
    path: v.pipe(v.string(), v.minLength(1)),
    context_length: v.pipe(v.number(), v.integer(), v.minValue(1)),
    parallel: v.pipe(v.number(), v.integer(), v.minValue(1)),
    prefill_step_size: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
    prompt_cache_bytes: v.optional(count),
    /** A draft model's folder: requests run one at a time through mlx-lm's speculative decoding. */
    draft: v.optional(v.pipe(v.string(), v.minLength(1))),
    /** This worker is rank `rank` of `size` of one model sharded with mlx.distributed (the hosts come in MLX_HOSTFILE). */
    distributed: v.optional(v.object({
      rank: count,
      size: v.pipe(v.number(), v.integer(), v.minValue(2), v.maxValue(64)),
      /** Seconds to wait for every rank to connect before giving up. */
      join_timeout_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(3600))),
    })),
  }),
  v.object({
    type: v.literal("generate"),
    id,
    prompt: v.variant("kind", [
      v.object({
        kind: v.literal("chat"),
        messages: v.pipe(v.array(WireMessage), v.minLength(1)),
        tools: v.optional(v.array(WireTool)),
        /** Extra chat-template variables (enable_thinking, reasoning_effort, …). */
        template_kwargs: v.optional(v.record(v.string(), v.unknown())),
      }),
      v.object({ kind: v.literal("text"), text: v.string() }),
    ]),
    max_tokens: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
    sampling: v.object({
      temperature: v.optional(finite),
      top_k: v.optional(count),
      top_p: v.optional(finite),
      min_p: v.optional(finite),
      seed: v.optional(v.pipe(v.number(), v.integer())),
      repeat_penalty: v.optional(finite),
      presence_penalty: v.optional(finite),
      frequency_penalty: v.optional(finite),
      /** End-of-sequence tokens are never sampled: generation runs to max_tokens. */
      ignore_eos: v.optional(v.boolean()),
      /** Token id (decimal string) → added to its logit; -100 or less bans it. */
      logit_bias: v.optional(v.record(v.pipe(v.string(), v.regex(/^\d+$/)), finite)),
    }),
    /** Send each generated token's logprob with this many alternatives (`logprobs` messages). */
    logprobs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(20))),
    /** Pull tool calls out of the text with the model's own tool-call format. */
    parse_tools: v.boolean(),
    /** Send the model's thinking as `reasoning` messages, apart from the answer. */
    split_reasoning: v.optional(v.boolean()),
  }),
  v.object({ type: v.literal("cancel"), id }),
  /** Ends a generation as if the model had stopped: `done` (finish_reason "stop") with the tokens so far. */
  v.object({ type: v.literal("end"), id }),
  v.object({ type: v.literal("tokenize"), id, text: v.string(), add_special_tokens: v.boolean() }),
  v.object({ type: v.literal("detokenize"), id, tokens: v.array(count) }),
  v.object({
    type: v.literal("chat_tokens"), id, messages: v.pipe(v.array(WireMessage), v.minLength(1)), tools: v.optional(v.array(WireTool)),
    template_kwargs: v.optional(v.record(v.string(), v.unknown())),
  }),
  v.object({ type: v.literal("memory"), id }),
  /** Log-probabilities of tokens[first_scored…] given what precedes each (teacher forcing, fresh cache). */
  /** With `top`, the reply also has each scored token's text and its `top` most likely alternatives (echo with logprobs). */
  v.object({
    type: v.literal("score"), id, tokens: v.pipe(v.array(count), v.minLength(2)), first_scored: v.pipe(v.number(), v.integer(), v.minValue(1)),
    top: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(20))),
  }),
  v.object({ type: v.literal("shutdown") }),
]);
export type ToWorker = v.InferOutput<typeof ToWorker>;

// ---- worker → LMX ----

/** A token's text, logprob and most likely alternatives (`logprobs` messages, `scores` with `top`). */
const WorkerTokenLogprob = v.object({ token: v.string(), logprob: v.number(), top: v.array(v.object({ token: v.string(), logprob: v.number() })) });

const Memory = {
  active_bytes: count,
  peak_bytes: count,
  cache_bytes: count,
  prompt_cache_bytes: count,
};

export const FromWorker = v.variant("type", [
  v.object({
    type: v.literal("hello"),
    protocol: v.pipe(v.number(), v.integer()),
    pid: v.pipe(v.number(), v.integer()),
    python: v.string(),
    mlx: v.nullable(v.string()),
    mlx_lm: v.nullable(v.string()),
  }),
  v.object({ type: v.literal("heartbeat"), steps: count }),
  v.object({
    type: v.literal("loaded"),
    id,
    model_type: v.string(),
    vocab_size: count,
    has_chat_template: v.boolean(),
    has_tool_calling: v.boolean(),
    /** The model's markers (mlx-lm's reading of its tokenizer and template), null where it has none. */
    think_start: v.nullable(v.string()),
    think_end: v.nullable(v.string()),
    tool_call_start: v.nullable(v.string()),
    tool_call_end: v.nullable(v.string()),
    /** mlx-lm's tool parser module for this model (json_tools, glm47, mistral, …). */
    tool_parser: v.nullable(v.string()),
    eos_token_ids: v.array(count),
    bos_token_ids: v.array(count),
    load_ms: ms,
    memory: v.object(Memory),
    rank: v.optional(count),
    size: v.optional(count),
  }),
  v.object({ type: v.literal("started"), id, prompt_tokens: count, cached_tokens: count, max_tokens: count }),
  v.object({ type: v.literal("progress"), id, processed: count, total: count }),
  v.object({ type: v.literal("text"), id, text: v.string() }),
  v.object({ type: v.literal("reasoning"), id, text: v.string() }),
  /** A fragment of tool call number `call`, as the model writes it (its raw syntax, markers excluded). */
  v.object({ type: v.literal("tool_text"), id, call: count, text: v.string() }),
  /**
   * Tool call `call` closed: mlx-lm's parser's reading of it (null: it could not be parsed);
   * `cut`: generation hit max_tokens inside it.
   */
  v.object({
    type: v.literal("tool_end"), id, call: count, cut: v.boolean(),
    calls: v.nullable(v.array(v.object({ name: v.string(), arguments: v.string() }))),
    /** The call as the model wrote it, markers included (returned as text when it cannot be read). */
    raw: v.string(),
  }),
  /** Generated tokens' log-probabilities (after logit bias and penalties, before temperature and truncation). */
  v.object({ type: v.literal("logprobs"), id, tokens: v.array(WorkerTokenLogprob) }),
  v.object({
    type: v.literal("done"),
    id,
    finish_reason: v.picklist(["stop", "length"]),
    prompt_tokens: count,
    cached_tokens: count,
    completion_tokens: count,
    /** Of completion_tokens, those generated while thinking. */
    reasoning_tokens: count,
    prefill_ms: ms,
    decode_ms: ms,
    peak_memory_bytes: count,
    /** A model loaded with a draft: tokens the draft proposed, and of them those the model accepted. */
    draft_tokens: v.optional(count),
    draft_accepted_tokens: v.optional(count),
  }),
  v.object({
    type: v.literal("error"),
    id,
    code: v.string(),
    message: v.string(),
    prompt_tokens: v.optional(count),
    context_length: v.optional(count),
  }),
  v.object({ type: v.literal("tokens"), id, tokens: v.array(count) }),
  v.object({ type: v.literal("text_of"), id, text: v.string() }),
  /** `running`: sequences the worker is generating right now; `generated`: the tokens they have generated so far. */
  v.object({ type: v.literal("memory"), id, running: count, generated: count, ...Memory }),
  v.object({ type: v.literal("scores"), id, logprobs: v.array(v.number()), tokens: v.optional(v.array(WorkerTokenLogprob)) }),
  v.object({ type: v.literal("fatal"), message: v.string() }),
  /** A rank other than 0 of a distributed model: rank 0 ended the group (its model was unloaded). The worker exits next. */
  v.object({ type: v.literal("ended"), message: v.string() }),
]);
export type FromWorker = v.InferOutput<typeof FromWorker>;
export type WorkerReply = Extract<FromWorker, { id: string }>;
export type Hello = Extract<FromWorker, { type: "hello" }>;
export type Loaded = Extract<FromWorker, { type: "loaded" }>;
export type Done = Extract<FromWorker, { type: "done" }>;

/** The `--self-test` line the worker prints when the runtime is checked after an install. */
export const SelfTest = v.object({
  type: v.literal("self_test"),
  ok: v.boolean(),
  tokens: v.array(count),
  device: v.string(),
  ms,
  python: v.string(),
  mlx: v.nullable(v.string()),
  mlx_lm: v.nullable(v.string()),
});
export type SelfTest = v.InferOutput<typeof SelfTest>;

/** `--knows-architecture TYPE`: whether an installed mlx-lm has a model class for TYPE. */
export const ArchitectureAnswer = v.object({
  type: v.literal("architecture"),
  model_type: v.string(),
  known: v.boolean(),
  mlx_lm: v.nullable(v.string()),
});

/** Longest line accepted from the worker; anything longer is garbage, not a message. */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

export class ProtocolViolation extends Error {
  override name = "ProtocolViolation";
}

/** Parses and validates one line from the worker. */
export function parseWorkerLine(line: string): FromWorker {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new ProtocolViolation(`not JSON: ${JSON.stringify(line.slice(0, 200))}`);
  }
  const parsed = v.safeParse(FromWorker, raw);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new ProtocolViolation(`${v.getDotPath(issue) ?? "(message)"}: ${issue.message} in ${JSON.stringify(line.slice(0, 200))}`);
  }
  return parsed.output;
}

/** Serialises a request after checking it against the schema, so a bug here never reaches the worker as a protocol error. */
export function encodeRequest(msg: ToWorker): string {
  const parsed = v.safeParse(ToWorker, msg);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new ProtocolViolation(`refusing to send an invalid ${msg.type} message: ${v.getDotPath(issue) ?? "(message)"}: ${issue.message}`);
  }
  return JSON.stringify(msg) + "\n";
}

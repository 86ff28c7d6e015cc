import type { Tokenizer } from "@huggingface/tokenizers";
import { checkPromptLength, contextExceeded, type PromptKind } from "../../core/context.ts";
import type { EventSink, FinishReason, TokenLogprob } from "../../core/events.ts";
import type { ChatMessage, ChatPrompt, GenerationRequest, ResponseFormat, SamplingOptions, ToolDefinition, EmbeddingInput, EmbeddingResult } from "../../core/request.ts";
import { withSamplingDefaults } from "../../core/sampling.ts";
import { timings } from "../../core/timings.ts";
import { checkJsonReply, cutShortNote, emitCutShortCall, emitToolCalls, parseForcedCall, planChat } from "../../core/tools.ts";
import { ContextLengthExceededError, EngineError, errorMessage, GenerationAbortedError, InvalidRequestError, LmxError, OutputFormatError } from "../../errors.ts";
import type { LoadedModel, MemoryEstimate, ResolvedLoadSettings, ModelDescriptor, SpeculativeStatus } from "../types.ts";
import { MlxChatOutput } from "./chat-output.ts";
import type { Done, Loaded, ToWorker, WireMessage, WireTool, WorkerReply } from "./protocol.ts";
import { WorkerCrashedError, WorkerRequestError, type WorkerSupervisor } from "./supervisor.ts";

interface MlxChatPlan {
  messages: WireMessage[];
  templateKwargs?: Record<string, unknown>;
  tools?: WireTool[];
  /** tool_choice forced a call: the reply must be one JSON tool call of these tools. */
  forced?: ToolDefinition[];
  /** response_format asked for JSON: MLX cannot constrain sampling, so the reply is checked before anyone sees it. */
  json?: Exclude<ResponseFormat, { type: "text" }>;
}


/** OpenAI messages → the worker's messages, with the same consistency checks as the llama.cpp engine. */
function toWire(messages: ChatMessage[]): WireMessage[] {
  const issued = new Set<string>();
  const answered = new Set<string>();
  const out = messages.map((m, i): WireMessage => {
    switch (m.role) {
      case "assistant":
        for (const c of m.toolCalls ?? []) issued.add(c.id);
        return {
          role: "assistant", content: m.content,
          ...(m.toolCalls?.length ? { tool_calls: m.toolCalls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments })) } : {}),
          ...(m.reasoning ? { reasoning: m.reasoning } : {}),
        };
      case "tool":
        if (!issued.has(m.toolCallId)) {
          throw new InvalidRequestError(
            `messages[${i}]: tool message refers to tool_call_id '${m.toolCallId}', which no preceding assistant message issued`,
            `messages[${i}].tool_call_id`);
        }
        answered.add(m.toolCallId);
        return { role: "tool", content: m.content, tool_call_id: m.toolCallId };
      default:
        return { role: m.role, content: m.content };
    }
  });
  for (const m of messages) {
    if (m.role !== "assistant") continue;
    for (const c of m.toolCalls ?? []) {
      if (!answered.has(c.id)) throw new InvalidRequestError(`assistant tool call '${c.name}' has no tool message with its result`, "messages");
    }
  }
  return out;
}

/**
 * The chat template's extra variables: the request's own, with reasoning_effort mapped the way
 * templates read it ("none" → enable_thinking false; a level → reasoning_effort, as gpt-oss's does).
 */
function templateKwargsOf(prompt: ChatPrompt): Record<string, unknown> | undefined {
  const kwargs: Record<string, unknown> = { ...(prompt.templateKwargs ?? {}) };
  if (prompt.reasoningEffort === "none") kwargs.enable_thinking = false;
  else if (prompt.reasoningEffort !== undefined) kwargs.reasoning_effort = prompt.reasoningEffort;
  return Object.keys(kwargs).length > 0 ? kwargs : undefined;
}

/** Adds an instruction to the conversation's system message (or starts one), as templates expect one system turn first. */
function withSystem(messages: WireMessage[], instruction: string): WireMessage[] {
  const [first, ...rest] = messages;
  if (first?.role === "system") return [{ role: "system", content: `${first.content}\n\n${instruction}` }, ...rest];
  return [{ role: "system", content: instruction }, ...messages];
}

export class MlxLoadedModel implements LoadedModel {
  private unloaded = false;
  /** Tokens the draft model proposed since the load, and of them those the model accepted. */
  private drafted = 0;
  private accepted = 0;

  constructor(
    private readonly supervisor: WorkerSupervisor,
    readonly descriptor: ModelDescriptor,
    readonly options: ResolvedLoadSettings,
    private readonly estimate: MemoryEstimate,
    private readonly tokenizer: () => Tokenizer,
    private readonly onUnload?: () => void,
  ) {}

  get contextLength(): number {
    return this.options.contextLength;
  }

  /** What the worker reported when it loaded the model (undefined while it restarts). */
  get worker(): { pid: number | undefined; state: string; loaded: Loaded | undefined } {
    return { pid: this.supervisor.pid, state: this.supervisor.state, loaded: this.supervisor.loaded };
  }

  // Token counting is synchronous in the engine interface, so it runs on a JavaScript copy of the
  // model's tokenizer (tokenizer.json); generation itself always tokenizes in the worker.
  countTokens(text: string): number {
    return this.tokenize(text).length;
  }

  tokenize(text: string): number[] {
    return this.tokenizer().encode(text, { add_special_tokens: false }).ids;
  }

  detokenize(tokens: number[]): string {
    return this.tokenizer().decode(tokens);
  }

  async countChatTokens(prompt: ChatPrompt): Promise<number> {
    const plan = this.plan(prompt);
    try {
      const reply = await this.serve(() => this.supervisor.call({
        type: "chat_tokens", id: this.supervisor.newId("count"), messages: plan.messages, tools: plan.tools,
        ...(plan.templateKwargs ? { template_kwargs: plan.templateKwargs } : {}),
      }, "tokens"));
      return reply.tokens.length;
    } catch (err) {
      throw this.mapError(err, undefined, "messages");
    }
  }

  speculative(): SpeculativeStatus | undefined {
    const spec = this.options.speculative;
    if (spec?.mode !== "draft") return undefined;
    return { mode: "draft", draft: spec.draftId, draftTokens: this.drafted, draftAcceptedTokens: this.accepted };
  }

  memoryInUse(): MemoryEstimate {
    return this.estimate;
  }

  /** The worker's own account: MLX memory (active, peak, cache, prompt cache) and running sequences. */
  async workerMemory(): Promise<Extract<WorkerReply, { type: "memory" }>> {
    return this.serve(() => this.supervisor.call({ type: "memory", id: this.supervisor.newId("mem") }, "memory"));
  }

  /** The worker gave up (crashed too often): the scheduler frees this model and marks it failed. */
  onFailed(listener: (err: Error) => void): void {
    this.supervisor.onFailed(listener);
  }

  /** `attempt` on the worker, started again if it crashed; never after unload (that would leak a process). */
  private async serve<T>(attempt: () => Promise<T>, retryable?: () => boolean): Promise<T> {
    if (this.unloaded) throw new EngineError(`model '${this.descriptor.id}' was unloaded`);
    return this.supervisor.serve(attempt, retryable);
  }

  private plan(prompt: ChatPrompt): MlxChatPlan {
    const kwargs = templateKwargsOf(prompt);
    const withKwargs = (p: MlxChatPlan): MlxChatPlan => (kwargs ? { ...p, templateKwargs: kwargs } : p);
    const plan = planChat(prompt);
    const messages = toWire(prompt.messages);
    if (plan.mode === "forced") return withKwargs({ messages: withSystem(messages, plan.preamble), forced: plan.tools });
    if (plan.mode === "tools") {
      const tools = plan.tools.map((t) => ({ name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), ...(t.parameters ? { parameters: t.parameters } : {}) }));
      return withKwargs({ messages, tools });
    }
    if (plan.format?.type === "json_object") return withKwargs({ messages: withSystem(messages, "Reply with a single JSON object and nothing else."), json: plan.format });
    if (plan.format?.type === "json_schema") {
      return withKwargs({ messages: withSystem(messages, `Reply with a single JSON value and nothing else. It must match this JSON schema:\n${JSON.stringify(plan.format.schema)}`), json: plan.format });
    }
    return withKwargs({ messages });
  }

  private sampling(request: SamplingOptions): Extract<ToWorker, { type: "generate" }>["sampling"] {
    const req = withSamplingDefaults(request);
    return {
      temperature: req.temperature,
      top_k: req.topK,
      top_p: req.topP,
      min_p: req.minP,
      ...(req.seed !== undefined ? { seed: req.seed } : {}),
      ...(req.repeatPenalty !== undefined ? { repeat_penalty: req.repeatPenalty } : {}),
      ...(req.presencePenalty !== undefined ? { presence_penalty: req.presencePenalty } : {}),
      ...(req.frequencyPenalty !== undefined ? { frequency_penalty: req.frequencyPenalty } : {}),
      ...(req.ignoreEos ? { ignore_eos: true } : {}),
      ...(req.logitBias && Object.keys(req.logitBias).length > 0 ? { logit_bias: this.logitBias(req.logitBias) } : {}),
    };
  }

  /** The request's logit bias with every id checked against the vocabulary the worker reported. */
  private logitBias(bias: Record<number, number>): Record<string, number> {
    const vocab = this.supervisor.loaded?.vocab_size;
    if (vocab === undefined) throw new EngineError(`model '${this.descriptor.id}' is not loaded in its worker`);
    for (const key of Object.keys(bias)) {
      if (!(Number(key) < vocab)) throw new InvalidRequestError(`logit_bias: token id ${key} is not in the model's vocabulary (${vocab} tokens)`, "logit_bias");
    }
    return Object.fromEntries(Object.entries(bias).map(([k, b]) => [String(k), b]));
  }

  private mapError(err: unknown, signal: AbortSignal | undefined, what: PromptKind): Error {
    if (signal?.aborted) return new GenerationAbortedError();
    if (err instanceof LmxError) return err;
    if (err instanceof WorkerRequestError) {
      const r = err.reply;
      // Only a prompt that leaves no room is refused; max_tokens is cut to the room left.
      if (r.code === "context_length_exceeded") return contextExceeded(r.prompt_tokens ?? 0, r.context_length ?? this.contextLength, what);
      if (r.code === "template_error") return new InvalidRequestError(`${r.message} (model '${this.descriptor.id}')`, "messages", "template_error");
      if (r.code === "invalid_chat_template") return new InvalidRequestError(`${r.message} (model '${this.descriptor.id}')`, null, "invalid_chat_template");
      return new EngineError(`generation failed: ${r.message}`);
    }
    return new EngineError(`generation failed: ${errorMessage(err)}`);
  }

  /**
   * Runs one generation in the worker. Text is emitted as it comes unless `buffer` (the caller
   * checks it first); `output` takes the split chat output (thinking, tool calls) instead.
   */
  private async run(
    prompt: Extract<ToWorker, { type: "generate" }>["prompt"],
    request: SamplingOptions,
    emit: EventSink,
    signal: AbortSignal,
    stop: AbortSignal | undefined,
    opts: { buffer: boolean; parseTools: boolean; splitReasoning: boolean; what: PromptKind; output?: (e: WorkerReply) => void },
  ): Promise<{ text: string; done: Done; logprobs: TokenLogprob[] }> {
    if (signal.aborted) throw new GenerationAbortedError();
    let text = "";
    let logprobs: TokenLogprob[] = [];
    // Once output reached the client, a crash cannot be hidden by generating again.
    let emitted = false;
    const msg = (): Extract<ToWorker, { type: "generate" }> => ({
      type: "generate",
      id: this.supervisor.newId("gen"),
      prompt,
      ...(request.maxTokens !== undefined ? { max_tokens: request.maxTokens } : {}),
      sampling: this.sampling(request),
      ...(request.logprobs !== undefined ? { logprobs: request.logprobs } : {}),
      parse_tools: opts.parseTools,
      split_reasoning: opts.splitReasoning,
    });
    let done: Done;
    try {
      // Starts a crashed worker again (after its back-off) before taking the request.
      done = await this.serve(() => {
        text = "";
        logprobs = [];
        return this.supervisor.generate(msg(), (e) => {
          if (e.type === "progress") { emit({ type: "progress" }); return; }
          if (e.type === "logprobs") {
            const tokens = e.tokens.map((t) => ({ ...t, bytes: [...Buffer.from(t.token, "utf8")] }));
            if (opts.buffer) logprobs.push(...tokens);
            else emit({ type: "logprobs", tokens });
            return;
          }
          if (e.type === "text") {
            text += e.text;
            if (opts.buffer) return;
          }
          if (e.type === "reasoning" && opts.buffer) { emitted = true; emit({ type: "reasoning", text: e.text }); return; }
          if (e.type !== "text" && e.type !== "reasoning" && e.type !== "tool_text" && e.type !== "tool_end") return;
          emitted = true;
          if (opts.output) opts.output(e);
          else if (e.type === "text" && e.text) emit({ type: "text", text: e.text });
        }, signal, stop);
      }, () => !emitted && !signal.aborted);
    } catch (err) {
      throw this.mapError(err, signal, opts.what);
    }
    this.supervisor.succeeded();
    this.drafted += done.draft_tokens ?? 0;
    this.accepted += done.draft_accepted_tokens ?? 0;
    return { text, done, logprobs };
  }

  private finish(emit: EventSink, done: Done, reason: FinishReason = done.finish_reason): void {
    emit({
      type: "usage",
      usage: {
        promptTokens: done.prompt_tokens, completionTokens: done.completion_tokens, reasoningTokens: done.reasoning_tokens, cachedTokens: done.cached_tokens,
        ...(done.draft_tokens !== undefined ? { draftTokens: done.draft_tokens, draftAcceptedTokens: done.draft_accepted_tokens ?? 0 } : {}),
      },
      timings: timings(done.prompt_tokens, done.completion_tokens, done.prefill_ms, done.decode_ms),
    });
    emit({ type: "finish", reason });
  }

  async generate(request: GenerationRequest, emit: EventSink, signal: AbortSignal, stop?: AbortSignal): Promise<void> {
    // The worker tokenizes on its own thread, but a prompt that cannot fit is refused here first, without a round trip.
    const texts = request.kind === "text" ? [request.prompt] : request.messages.map((m) => m.content);
    await checkPromptLength(texts, (text) => this.countTokens(text), this.contextLength, request.kind === "text" ? "prompt" : "messages");
    if (request.kind === "text") {
      if (request.suffix !== undefined) throw new InvalidRequestError("suffix: fill-in-the-middle is not supported on MLX models", "suffix", "unsupported_parameter");
      if (request.scorePrompt) emit({ type: "logprobs", tokens: await this.promptLogprobs(request.prompt, request.logprobs ?? 0, signal) });
      const { done } = await this.run({ kind: "text", text: request.prompt }, request, emit, signal, stop,
        { buffer: false, parseTools: false, splitReasoning: false, what: "prompt" });
      this.finish(emit, done);
      return;
    }
    const plan = this.plan(request);
    const buffer = plan.forced !== undefined || plan.json !== undefined;
    const loaded = this.supervisor.loaded;
    // parallel_tool_calls false: a second call ends the generation (softly, like a stop string).
    const extra = new AbortController();
    const output = buffer ? undefined : new MlxChatOutput(emit, { parser: loaded?.tool_parser ?? null }, { parallel: request.parallelToolCalls !== false, onExtraCall: () => extra.abort() });
    const { text, done, logprobs } = await this.run(
      { kind: "chat", messages: plan.messages, ...(plan.tools ? { tools: plan.tools } : {}), ...(plan.templateKwargs ? { template_kwargs: plan.templateKwargs } : {}) },
      request, emit, signal, stop ? AbortSignal.any([stop, extra.signal]) : extra.signal,
      { buffer, parseTools: plan.tools !== undefined, splitReasoning: true, what: "messages", output: output?.on });
    const note = cutShortNote(done.finish_reason, done.completion_tokens);

    if (plan.forced) {
      const parsed = parseForcedCall(text, plan.forced, note);
      if ("problem" in parsed && done.finish_reason === "length") {
        emitCutShortCall(emit, text);
        this.finish(emit, done, "length");
        return;
      }
      if ("problem" in parsed) throw new OutputFormatError(parsed.problem);
      emitToolCalls(emit, [parsed.call]);
      this.finish(emit, done, "tool_calls");
      return;
    }
    if (plan.json) {
      const problem = checkJsonReply(text, plan.json, note);
      if (problem) throw new OutputFormatError(`MLX models cannot constrain sampling to JSON, and ${problem}`);
      emit({ type: "text", text });
      if (logprobs.length > 0) emit({ type: "logprobs", tokens: logprobs });
      this.finish(emit, done);
      return;
    }
    this.finish(emit, done, output && output.toolCalls > 0 && done.finish_reason !== "length" ? "tool_calls" : done.finish_reason);
  }

  /**
   * The prompt's tokens with their logprobs and `top` alternatives (echo with logprobs), the first
   * with null: nothing before it predicts it. Scored on a fresh cache, as the context probe is.
   */
  private async promptLogprobs(prompt: string, top: number, signal: AbortSignal): Promise<TokenLogprob[]> {
    await this.serve(async () => undefined);
    const bos = this.supervisor.loaded?.bos_token_ids ?? [];
    const text = this.tokenize(prompt);
    if (text.length === 0) return [];
    const first = this.detokenize([text[0]!]);
    const head: TokenLogprob = { token: first, bytes: [...Buffer.from(first, "utf8")], logprob: null, top: [] };
    if (text.length === 1) return [head];
    const tokens = [...bos, ...text];
    const call = this.supervisor.call({ type: "score", id: this.supervisor.newId("score"), tokens, first_scored: bos.length + 1, top }, "scores");
    const aborted = new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(new GenerationAbortedError()), { once: true }));
    try {
      const reply = await Promise.race([call, aborted]);
      return [head, ...(reply.tokens ?? []).map((t) => ({ ...t, bytes: [...Buffer.from(t.token, "utf8")] }))];
    } catch (err) {
      throw this.mapError(err, signal, "prompt");
    } finally {
      call.catch(() => undefined);
    }
  }

  async embed(_inputs: readonly EmbeddingInput[], _signal?: AbortSignal): Promise<EmbeddingResult> {
    throw new InvalidRequestError(`'${this.descriptor.id}' is an MLX model; this server computes embeddings with GGUF models only`, "model", "embeddings_unsupported");
  }

  async logprobs(prefix: number[], continuation: number[], signal?: AbortSignal): Promise<number[]> {
    if (continuation.length === 0) return [];
    await this.serve(async () => undefined);
    const bos = this.supervisor.loaded?.bos_token_ids ?? [];
    const tokens = [...bos, ...prefix, ...continuation];
    if (tokens.length > this.contextLength) {
      throw new ContextLengthExceededError(tokens.length, this.contextLength, `the scored text has ${tokens.length} tokens`, "prompt");
    }
    let first = bos.length + prefix.length;
    // With nothing before it, the first token has no prediction: it gets the smallest probability.
    const unscored: number[] = [];
    if (first === 0) {
      unscored.push(Math.log(Number.MIN_VALUE));
      first = 1;
      if (tokens.length < 2) return unscored;
    }
    if (signal?.aborted) throw new GenerationAbortedError();
    const call = this.supervisor.call({ type: "score", id: this.supervisor.newId("score"), tokens, first_scored: first }, "scores");
    const aborted = new Promise<never>((_, reject) => signal?.addEventListener("abort", () => reject(new GenerationAbortedError()), { once: true }));
    try {
      const reply = await Promise.race([call, aborted]);
      return [...unscored, ...reply.logprobs.map((x) => Math.max(x, Math.log(Number.MIN_VALUE)))];
    } catch (err) {
      throw this.mapError(err, signal, "prompt");
    } finally {
      call.catch(() => undefined);
    }
  }

  async unload(): Promise<void> {
    if (this.unloaded) return;
    this.unloaded = true;
    this.onUnload?.();
    await this.supervisor.stop();
  }
}

export { WorkerCrashedError };

import type { Tokenizer } from "@huggingface/tokenizers";
import { randomBytes } from "node:crypto";
import { ContextLengthExceededError, EngineError, errorMessage, InvalidRequestError, LmxError, OutputFormatError } from "../../errors.ts";
import { log } from "../../log.ts";
import { forcedToolPreamble } from "../llama/chat-history.ts";
import { GenerationAbortedError } from "../llama/loaded-model.ts";
import type {
  ChatMessage, ChatRequest, CompletionRequest, EmbeddingResult, FinishReason, GenerationHooks, GenerationResult, JsonSchema,
  LoadedModel, LoadOptions, MemoryEstimate, ModelDescriptor, SamplingOptions, ToolCall, ToolDefinition,
} from "../types.ts";
import { validateJsonSchema } from "./json-schema.ts";
import type { Done, Loaded, ToWorker, WireMessage, WireTool, WorkerReply } from "./protocol.ts";
import { WorkerCrashedError, WorkerRequestError, type WorkerSupervisor } from "./supervisor.ts";

interface ChatPlan {
  messages: WireMessage[];
  tools?: WireTool[];
  /** tool_choice forced a call: the reply must be one JSON tool call of these tools. */
  forced?: ToolDefinition[];
  /** response_format asked for JSON: the reply is checked (against the schema, if any) before anyone sees it. */
  json?: { schema?: JsonSchema };
}

function toolCallId(): string {
  return "call_" + randomBytes(12).toString("base64url");
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

/** OpenAI messages → the worker's messages, with the same consistency checks as the llama.cpp engine. */
function toWire(messages: ChatMessage[]): WireMessage[] {
  const issued = new Set<string>();
  const answered = new Set<string>();
  const out = messages.map((m, i): WireMessage => {
    switch (m.role) {
      case "assistant":
        for (const c of m.toolCalls ?? []) issued.add(c.id);
        return { role: "assistant", content: m.content, ...(m.toolCalls?.length ? { tool_calls: m.toolCalls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments })) } : {}) };
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

/** Adds an instruction to the conversation's system message (or starts one), as templates expect one system turn first. */
function withSystem(messages: WireMessage[], instruction: string): WireMessage[] {
  const [first, ...rest] = messages;
  if (first?.role === "system") return [{ role: "system", content: `${first.content}\n\n${instruction}` }, ...rest];
  return [{ role: "system", content: instruction }, ...messages];
}

export class MlxLoadedModel implements LoadedModel {
  private unloaded = false;

  constructor(
    private readonly supervisor: WorkerSupervisor,
    readonly descriptor: ModelDescriptor,
    readonly options: LoadOptions,
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

  async countChatTokens(request: ChatRequest): Promise<number> {
    const plan = this.plan(request);
    await this.running();
    try {
      const reply = await this.supervisor.call({ type: "chat_tokens", id: this.supervisor.newId("count"), messages: plan.messages, tools: plan.tools }, "tokens");
      return reply.tokens.length;
    } catch (err) {
      throw this.mapError(err, undefined, 0, "messages");
    }
  }

  memoryInUse(): MemoryEstimate {
    return this.estimate;
  }

  /** The worker's own account: MLX memory (active, peak, cache, prompt cache) and running sequences. */
  async workerMemory(): Promise<Extract<WorkerReply, { type: "memory" }>> {
    await this.running();
    return this.supervisor.call({ type: "memory", id: this.supervisor.newId("mem") }, "memory");
  }

  /** The worker, started again if it crashed; never after unload (that would leak a process). */
  private async running(): Promise<void> {
    if (this.unloaded) throw new EngineError(`model '${this.descriptor.id}' was unloaded`);
    await this.supervisor.ensureRunning();
  }

  private plan(request: ChatRequest): ChatPlan {
    const tools = request.toolChoice === "none" ? [] : request.tools ?? [];
    const choice = request.toolChoice ?? "auto";
    const forced = tools.length > 0 && choice !== "auto" && choice !== "none";
    const format = request.responseFormat;
    const wantsJson = format !== undefined && format.type !== "text";
    if (forced && wantsJson) throw new InvalidRequestError("response_format cannot be combined with a forced tool_choice", "response_format");
    if (!forced && tools.length > 0 && wantsJson) {
      throw new InvalidRequestError("response_format json_object/json_schema cannot be combined with tools; use tool_choice 'none' or drop response_format", "response_format");
    }
    let messages = toWire(request.messages);
    if (forced) {
      const candidates = typeof choice === "object" ? tools.filter((t) => t.name === choice.name) : tools;
      if (candidates.length === 0) throw new InvalidRequestError(`tool_choice names '${(choice as { name: string }).name}', which is not in tools`, "tool_choice");
      return { messages: withSystem(messages, forcedToolPreamble(candidates)), forced: candidates };
    }
    if (format?.type === "json_object") {
      messages = withSystem(messages, "Reply with a single JSON object and nothing else.");
      return { messages, json: {} };
    }
    if (format?.type === "json_schema") {
      messages = withSystem(messages, `Reply with a single JSON value and nothing else. It must match this JSON schema:\n${JSON.stringify(format.schema)}`);
      return { messages, json: { schema: format.schema } };
    }
    const wireTools = tools.map((t) => ({ name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), ...(t.parameters ? { parameters: t.parameters } : {}) }));
    return { messages, tools: wireTools.length ? wireTools : undefined };
  }

  private sampling(req: SamplingOptions): Extract<ToWorker, { type: "generate" }>["sampling"] {
    // Defaults as in the llama.cpp engine, so a model answers alike whatever its format.
    return {
      temperature: req.temperature ?? 0.8,
      top_k: req.topK ?? 40,
      top_p: req.topP ?? 0.95,
      min_p: req.minP ?? 0.05,
      ...(req.seed !== undefined ? { seed: req.seed } : {}),
      ...(req.repeatPenalty !== undefined ? { repeat_penalty: req.repeatPenalty } : {}),
      ...(req.presencePenalty !== undefined ? { presence_penalty: req.presencePenalty } : {}),
      ...(req.frequencyPenalty !== undefined ? { frequency_penalty: req.frequencyPenalty } : {}),
      ...(req.ignoreEos ? { ignore_eos: true } : {}),
    };
  }

  private mapError(err: unknown, signal: AbortSignal | undefined, maxTokens: number | undefined, what: "messages" | "prompt"): Error {
    if (signal?.aborted) return new GenerationAbortedError();
    if (err instanceof LmxError) return err;
    if (err instanceof WorkerRequestError) {
      const r = err.reply;
      if (r.code === "context_length_exceeded") {
        const prompt = r.prompt_tokens ?? 0;
        const ctx = r.context_length ?? this.contextLength;
        const detail = maxTokens !== undefined
          ? `you requested ${prompt} tokens in the ${what} and ${maxTokens} in the completion`
          : `your ${what} has ${prompt} tokens, leaving no room for a completion`;
        return new ContextLengthExceededError(prompt + (maxTokens ?? 0), ctx, detail, what);
      }
      if (r.code === "template_error") return new InvalidRequestError(`${r.message} (model '${this.descriptor.id}')`, "messages", "template_error");
      if (r.code === "invalid_chat_template") return new InvalidRequestError(`${r.message} (model '${this.descriptor.id}')`, null, "invalid_chat_template");
      return new EngineError(`generation failed: ${r.message}`);
    }
    return new EngineError(`generation failed: ${errorMessage(err)}`);
  }

  private async generate(
    prompt: Extract<ToWorker, { type: "generate" }>["prompt"],
    request: SamplingOptions,
    hooks: GenerationHooks,
    opts: { buffer: boolean; parseTools: boolean; what: "messages" | "prompt" },
  ): Promise<{ text: string; done: Done }> {
    if (hooks.signal?.aborted) throw new GenerationAbortedError();
    try {
      // Starts a crashed worker again (after its back-off) before taking the request.
      await this.running();
    } catch (err) {
      throw this.mapError(err, hooks.signal, request.maxTokens, opts.what);
    }
    let text = "";
    const onText = opts.buffer ? undefined : hooks.onText;
    const msg: Extract<ToWorker, { type: "generate" }> = {
      type: "generate",
      id: this.supervisor.newId("gen"),
      prompt,
      ...(request.maxTokens !== undefined ? { max_tokens: request.maxTokens } : {}),
      sampling: this.sampling(request),
      stop: (request.stop ?? []).filter((s) => s.length > 0),
      parse_tools: opts.parseTools,
    };
    let done: Done;
    try {
      done = await this.supervisor.generate(msg, (e) => {
        if (e.type !== "text" || !e.text) return;
        text += e.text;
        onText?.(e.text);
      }, hooks.signal);
    } catch (err) {
      throw this.mapError(err, hooks.signal, request.maxTokens, opts.what);
    }
    this.supervisor.succeeded();
    return { text, done };
  }

  private result(text: string, done: Done, toolCalls: ToolCall[] = [], finish?: FinishReason): GenerationResult {
    const decodeMs = done.decode_ms;
    return {
      text,
      toolCalls,
      finishReason: finish ?? done.finish_reason,
      usage: { promptTokens: done.prompt_tokens, completionTokens: done.completion_tokens },
      timings: {
        prefillMs: round(done.prefill_ms),
        decodeMs: round(decodeMs),
        prefillTokensPerSecond: done.prefill_ms > 0 ? round((done.prompt_tokens / done.prefill_ms) * 1000) : 0,
        decodeTokensPerSecond: decodeMs > 0 && done.completion_tokens > 1 ? round(((done.completion_tokens - 1) / decodeMs) * 1000) : 0,
      },
    };
  }

  async chat(request: ChatRequest, hooks: GenerationHooks): Promise<GenerationResult> {
    const plan = this.plan(request);
    const buffer = plan.forced !== undefined || plan.json !== undefined;
    const { text, done } = await this.generate(
      { kind: "chat", messages: plan.messages, ...(plan.tools ? { tools: plan.tools } : {}) },
      request, hooks, { buffer, parseTools: plan.tools !== undefined, what: "messages" });

    if (plan.forced) return this.result("", done, [this.parseForcedCall(text, plan.forced, done)], "tool_calls");
    if (plan.json) {
      this.checkJson(text, plan.json.schema, done);
      hooks.onText?.(text);
      return this.result(text, done);
    }
    if (done.unparsed_tool_calls.length > 0) {
      if (done.tool_calls.length === 0) {
        throw new EngineError(`the model's tool call could not be parsed (generation hit max_tokens?): ${done.unparsed_tool_calls[0]!.slice(0, 200)}`, "invalid_tool_call");
      }
      log.warn("dropped tool calls that could not be parsed", { model: this.descriptor.id, count: done.unparsed_tool_calls.length });
    }
    if (done.tool_calls.length > 0) {
      return this.result(text, done, done.tool_calls.map((c) => ({ id: toolCallId(), name: c.name, arguments: c.arguments })), "tool_calls");
    }
    return this.result(text, done);
  }

  private cutShort(done: Done): string {
    return done.finish_reason === "length" ? ` (generation stopped at max_tokens after ${done.completion_tokens} tokens)` : "";
  }

  private checkJson(text: string, schema: JsonSchema | undefined, done: Done): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new OutputFormatError(
        `MLX models cannot constrain sampling to JSON, and this reply is not valid JSON${this.cutShort(done)}: ${JSON.stringify(text.slice(0, 200))}`);
    }
    if (schema === undefined) {
      if (value === null || typeof value !== "object" || Array.isArray(value)) throw new OutputFormatError("the model replied with JSON that is not an object, as json_object requires");
      return;
    }
    const problem = validateJsonSchema(value, schema);
    if (problem) {
      throw new OutputFormatError(`MLX models cannot constrain sampling to a JSON schema, and this reply does not match it: ${problem}`);
    }
  }

  private parseForcedCall(raw: string, tools: ToolDefinition[], done: Done): ToolCall {
    let parsed: { name?: unknown; arguments?: unknown };
    try {
      parsed = JSON.parse(raw) as typeof parsed;
    } catch {
      throw new OutputFormatError(`the model's tool call is not complete JSON${this.cutShort(done)}: ${JSON.stringify(raw.slice(0, 200))}`);
    }
    const tool = tools.find((t) => t.name === parsed.name);
    if (!tool) throw new OutputFormatError(`the model called ${JSON.stringify(parsed.name)}, which is not one of the allowed tools (${tools.map((t) => t.name).join(", ")})`);
    const args = parsed.arguments ?? {};
    const problem = validateJsonSchema(args, tool.parameters ?? { type: "object" });
    if (problem) throw new OutputFormatError(`the model's arguments for '${tool.name}' do not match its parameters schema: ${problem}`);
    return { id: toolCallId(), name: tool.name, arguments: JSON.stringify(args) };
  }

  async complete(request: CompletionRequest, hooks: GenerationHooks): Promise<GenerationResult> {
    const { text, done } = await this.generate({ kind: "text", text: request.prompt }, request, hooks, { buffer: false, parseTools: false, what: "prompt" });
    return this.result(text, done);
  }

  async embed(_inputs: string[], _signal?: AbortSignal): Promise<EmbeddingResult> {
    throw new InvalidRequestError(`'${this.descriptor.id}' is an MLX model; this server computes embeddings with GGUF models only`, "model", "embeddings_unsupported");
  }

  async logprobs(prefix: number[], continuation: number[], signal?: AbortSignal): Promise<number[]> {
    if (continuation.length === 0) return [];
    await this.running();
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
      throw this.mapError(err, signal, undefined, "prompt");
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

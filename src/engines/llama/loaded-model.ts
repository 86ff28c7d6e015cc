import type {
  ChatHistoryItem, ChatModelFunctions, ChatWrapper, GbnfJsonSchema, Llama, LlamaChatResponse, LlamaContext,
  LlamaContextSequence, LlamaEmbeddingContext, LlamaGrammar, LlamaModel, Token, TokenBias,
} from "node-llama-cpp";
import { randomBytes } from "node:crypto";
import { ContextLengthExceededError, EngineError, errorMessage, InvalidRequestError, LmxError } from "../../errors.ts";
import type {
  ChatRequest, CompletionRequest, EmbeddingResult, FinishReason, GenerationHooks, GenerationResult, JsonSchema, LoadedModel,
  LoadOptions, MemoryEstimate, ModelDescriptor, SamplingOptions, ToolCall,
} from "../types.ts";
import { DecodeGate } from "./batching.ts";
import { forcedToolPreamble, toChatHistory } from "./chat-history.ts";
import { withTemplateGuard } from "./template-guard.ts";
type NodeLlamaCpp = typeof import("node-llama-cpp");

/** The client went away; 499 is what proxies log for that, and nobody is left to read the body. */
export class GenerationAbortedError extends LmxError {
  constructor() {
    super("generation aborted: the client closed the request", 499, "invalid_request_error", "client_closed");
  }
}

interface ChatPlan {
  history: ChatHistoryItem[];
  functions?: ChatModelFunctions;
  grammar?: LlamaGrammar;
  /** tool_choice forced a call: the grammar-constrained reply is parsed into tool_calls. */
  forcedTool: boolean;
  promptTokens: Token[];
}

const GRAMMAR_CACHE_LIMIT = 64;

function toolCallId(): string {
  return "call_" + randomBytes(12).toString("base64url");
}

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return signal?.aborted === true || (err instanceof Error && err.name === "AbortError");
}

/** Counts generated tokens and splits wall time into prefill (until the first token) and decode. */
class GenerationClock {
  private readonly start = performance.now();
  private first: number | undefined;
  tokens = 0;

  onTokens(tokens: readonly Token[]): void {
    if (tokens.length === 0) return;
    this.first ??= performance.now();
    this.tokens += tokens.length;
  }

  timings(promptTokens: number): GenerationResult["timings"] {
    const end = performance.now();
    const first = this.first ?? end;
    const prefillMs = first - this.start;
    const decodeMs = end - first;
    return {
      prefillMs: round(prefillMs),
      decodeMs: round(decodeMs),
      prefillTokensPerSecond: prefillMs > 0 ? round((promptTokens / prefillMs) * 1000) : 0,
      decodeTokensPerSecond: decodeMs > 0 && this.tokens > 1 ? round(((this.tokens - 1) / decodeMs) * 1000) : 0,
    };
  }
}

function nonEmpty(fn: ((text: string) => void) | undefined): ((text: string) => void) | undefined {
  return fn && ((text) => { if (text) fn(text); });
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

export class LlamaLoadedModel implements LoadedModel {
  private readonly free: LlamaContextSequence[] = [];
  private readonly grammarCache = new Map<string, LlamaGrammar>();
  private embeddingContext: Promise<LlamaEmbeddingContext> | undefined;
  private embedQueue: Promise<unknown> = Promise.resolve();
  private unloaded = false;
  private eogBias: TokenBias | undefined;

  constructor(
    private readonly nlc: NodeLlamaCpp,
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly chatWrapper: ChatWrapper,
    readonly descriptor: ModelDescriptor,
    readonly options: LoadOptions,
    private readonly estimate: MemoryEstimate,
    private readonly gate: DecodeGate = new DecodeGate(),
  ) {
    for (let i = 0; i < options.parallel; i++) this.free.push(context.getSequence());
  }

  /**
   * What was asked for, not what llama.cpp allocated: it pads each sequence's cells up (280 → 512),
   * and the extra room is memory, not a promise: a tested context of 280 must stay the limit.
   */
  get contextLength(): number {
    return Math.min(this.options.contextLength, this.context.contextSize);
  }

  countTokens(text: string): number {
    return this.model.tokenize(text, false).length;
  }

  tokenize(text: string): number[] {
    return this.model.tokenize(text, false).map(Number);
  }

  detokenize(tokens: number[]): string {
    return this.model.detokenize(tokens as Token[]);
  }

  async countChatTokens(request: ChatRequest): Promise<number> {
    return (await this.planChat(request)).promptTokens.length;
  }

  memoryInUse(): MemoryEstimate {
    return this.estimate;
  }

  /**
   * A free sequence, preferring the one whose cached tokens share the longest prefix with the
   * prompt: node-llama-cpp then evaluates only the new suffix (prompt caching across turns).
   */
  private acquire(prompt?: readonly Token[]): LlamaContextSequence {
    if (this.free.length === 0) throw new EngineError("no free sequence: the scheduler admitted more requests than --parallel");
    let best = this.free.length - 1;
    if (prompt && prompt.length > 0) {
      let bestLen = -1;
      this.free.forEach((seq, i) => {
        const cached = seq.contextTokens;
        let n = 0;
        const max = Math.min(cached.length, prompt.length);
        while (n < max && cached[n] === prompt[n]) n++;
        if (n > bestLen) { bestLen = n; best = i; }
      });
    }
    return this.free.splice(best, 1)[0]!;
  }

  private release(seq: LlamaContextSequence): void {
    if (!this.unloaded) this.free.push(seq);
  }

  private async grammarForSchema(schema: JsonSchema, param: string): Promise<LlamaGrammar> {
    const key = JSON.stringify(schema);
    const hit = this.grammarCache.get(key);
    if (hit) return hit;
    let grammar: LlamaGrammar;
    try {
      // JSON schemas come from clients; node-llama-cpp rejects what its grammar cannot express.
      grammar = await this.llama.createGrammarForJsonSchema(schema as Parameters<Llama["createGrammarForJsonSchema"]>[0]);
    } catch (err) {
      throw new InvalidRequestError(`unsupported JSON schema: ${errorMessage(err)}`, param);
    }
    if (this.grammarCache.size >= GRAMMAR_CACHE_LIMIT) this.grammarCache.delete(this.grammarCache.keys().next().value!);
    this.grammarCache.set(key, grammar);
    return grammar;
  }

  private async planChat(request: ChatRequest): Promise<ChatPlan> {
    const tools = request.toolChoice === "none" ? [] : request.tools ?? [];
    const choice = request.toolChoice ?? "auto";
    const forced = tools.length > 0 && choice !== "auto" && choice !== "none";
    if (forced && request.responseFormat && request.responseFormat.type !== "text") {
      throw new InvalidRequestError("response_format cannot be combined with a forced tool_choice", "response_format");
    }
    if (!forced && tools.length > 0 && request.responseFormat && request.responseFormat.type !== "text") {
      throw new InvalidRequestError("response_format json_object/json_schema cannot be combined with tools; use tool_choice 'none' or drop response_format", "response_format");
    }

    let grammar: LlamaGrammar | undefined;
    let functions: ChatModelFunctions | undefined;
    let history: ChatHistoryItem[];
    if (forced) {
      const candidates = typeof choice === "object" ? tools.filter((t) => t.name === choice.name) : tools;
      if (candidates.length === 0) {
        throw new InvalidRequestError(`tool_choice names '${(choice as { name: string }).name}', which is not in tools`, "tool_choice");
      }
      const variants = candidates.map((t) => ({
        type: "object",
        properties: { name: { const: t.name }, arguments: t.parameters ?? { type: "object", properties: {} } },
        required: ["name", "arguments"],
      }));
      const schema = variants.length === 1 ? variants[0]! : { oneOf: variants };
      grammar = await this.grammarForSchema(schema, "tools");
      history = toChatHistory(request.messages, forcedToolPreamble(candidates));
    } else {
      history = toChatHistory(request.messages);
      if (tools.length > 0) {
        const defs: Record<string, ChatModelFunctions[string]> = {};
        for (const [i, t] of tools.entries()) {
          // Validate each schema up front so a bad one is a 400, not a failure mid-generation.
          if (t.parameters) await this.grammarForSchema(t.parameters, `tools[${i}].function.parameters`);
          defs[t.name] = { description: t.description, params: t.parameters as GbnfJsonSchema | undefined };
        }
        functions = defs;
      }
      const format = request.responseFormat;
      if (format?.type === "json_object") grammar = await this.llama.getGrammarFor("json");
      else if (format?.type === "json_schema") grammar = await this.grammarForSchema(format.schema, "response_format.json_schema.schema");
    }

    const { contextText } = await withTemplateGuard(this.nlc, () => this.chatWrapper.generateContextState({
      chatHistory: history,
      availableFunctions: functions,
      documentFunctionParams: true,
    }));
    const promptTokens = contextText.tokenize(this.model.tokenizer);
    return { history, functions, grammar, forcedTool: forced, promptTokens };
  }

  /** Prompt + requested completion must fit the sequence's context: never truncate silently. */
  private budget(promptTokens: number, maxTokens: number | undefined, what: string, param: string): number {
    const ctx = this.contextLength;
    if (maxTokens !== undefined) {
      if (promptTokens + maxTokens > ctx) {
        throw new ContextLengthExceededError(promptTokens + maxTokens, ctx,
          `you requested ${promptTokens} tokens in the ${what} and ${maxTokens} in the completion`, param);
      }
      return maxTokens;
    }
    if (promptTokens >= ctx) {
      throw new ContextLengthExceededError(promptTokens, ctx, `your ${what} has ${promptTokens} tokens, leaving no room for a completion`, param);
    }
    return ctx - promptTokens;
  }

  /**
   * A token bias that forbids every end-of-generation token (llama-server's `ignore_eos`).
   * node-llama-cpp's `TokenBias.set` skips EOG tokens on purpose, so their logits go into its
   * bias table directly; the table's shape is checked so an engine upgrade fails loudly, not silently.
   */
  private noEogBias(): TokenBias {
    if (this.eogBias) return this.eogBias;
    const bias = new this.nlc.TokenBias(this.model.tokenizer);
    const table = (bias as unknown as { _biases?: unknown })._biases;
    if (!(table instanceof Map)) throw new EngineError("ignore_eos is not supported by this llama.cpp engine version", "unsupported_parameter");
    const tokens = (this.model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: readonly unknown[] } } }).tokenizer?.ggml?.tokens;
    const vocab = tokens?.length ?? 0;
    for (let t = 0; t < vocab; t++) if (this.model.isEogToken(t as Token)) table.set(t, -Infinity);
    for (const t of [this.model.tokens.eos, this.model.tokens.eot]) if (t !== null) table.set(t, -Infinity);
    this.eogBias = bias;
    return bias;
  }

  private sampling(req: SamplingOptions) {
    const penalize = req.repeatPenalty !== undefined || req.presencePenalty !== undefined || req.frequencyPenalty !== undefined;
    return {
      tokenBias: req.ignoreEos ? this.noEogBias() : undefined,
      temperature: req.temperature ?? 0.8,
      topK: req.topK ?? 40,
      topP: req.topP ?? 0.95,
      minP: req.minP ?? 0.05,
      seed: req.seed,
      repeatPenalty: penalize
        ? { penalty: req.repeatPenalty ?? 1, presencePenalty: req.presencePenalty, frequencyPenalty: req.frequencyPenalty, lastTokens: 64 }
        : (false as const),
      customStopTriggers: req.stop && req.stop.length > 0 ? req.stop : undefined,
    };
  }

  async chat(request: ChatRequest, hooks: GenerationHooks): Promise<GenerationResult> {
    const plan = await this.planChat(request);
    const promptTokens = plan.promptTokens.length;
    const maxTokens = this.budget(promptTokens, request.maxTokens, "messages", "messages");
    const clock = new GenerationClock();
    const seq = this.acquire(plan.promptTokens);
    const tracked = this.gate.track();
    const chat = new this.nlc.LlamaChat({ contextSequence: seq, chatWrapper: this.chatWrapper, autoDisposeSequence: false });
    let res: LlamaChatResponse<ChatModelFunctions>;
    try {
      res = await chat.generateResponse(plan.history, {
        ...this.sampling(request),
        maxTokens,
        grammar: plan.grammar,
        functions: plan.functions,
        documentFunctionParams: plan.functions ? true : undefined,
        signal: hooks.signal,
        onToken: (t) => { tracked.firstToken(); clock.onTokens(t); },
        // A forced tool call is raw JSON: it reaches the client as tool_calls, not as content.
        onTextChunk: plan.forcedTool ? undefined : nonEmpty(hooks.onText),
        // The context was checked to fit; shifting would drop the start of the conversation.
        contextShift: { strategy: "eraseFirstResponseAndKeepFirstSystem" },
      } as Parameters<typeof chat.generateResponse>[1]);
    } catch (err) {
      if (isAbort(err, hooks.signal)) throw new GenerationAbortedError();
      throw new EngineError(`generation failed: ${errorMessage(err)}`);
    } finally {
      tracked.done();
      chat.dispose({ disposeSequence: false });
      this.release(seq);
    }

    let toolCalls: ToolCall[] = [];
    let text = res.response;
    let finishReason: FinishReason = res.metadata.stopReason === "maxTokens" ? "length" : "stop";
    if (plan.forcedTool) {
      toolCalls = [this.parseForcedCall(res.response)];
      text = "";
      finishReason = "tool_calls";
    } else if (res.functionCalls && res.functionCalls.length > 0) {
      toolCalls = res.functionCalls.map((c) => ({ id: toolCallId(), name: c.functionName, arguments: JSON.stringify(c.params ?? {}) }));
      finishReason = "tool_calls";
    }
    return {
      text,
      toolCalls,
      finishReason,
      usage: { promptTokens, completionTokens: clock.tokens },
      timings: clock.timings(promptTokens),
    };
  }

  private parseForcedCall(raw: string): ToolCall {
    let parsed: { name?: unknown; arguments?: unknown };
    try {
      parsed = JSON.parse(raw) as typeof parsed;
    } catch {
      throw new EngineError(`the model's tool call is not complete JSON (generation hit max_tokens?): ${raw.slice(0, 200)}`, "invalid_tool_call");
    }
    if (typeof parsed.name !== "string") throw new EngineError("the model's tool call has no name", "invalid_tool_call");
    return { id: toolCallId(), name: parsed.name, arguments: JSON.stringify(parsed.arguments ?? {}) };
  }

  async complete(request: CompletionRequest, hooks: GenerationHooks): Promise<GenerationResult> {
    const tokens = this.model.tokenize(request.prompt);
    const promptTokens = tokens.length;
    const maxTokens = this.budget(promptTokens, request.maxTokens, "prompt", "prompt");
    const clock = new GenerationClock();
    const seq = this.acquire(tokens);
    const tracked = this.gate.track();
    const completion = new this.nlc.LlamaCompletion({ contextSequence: seq, autoDisposeSequence: false });
    try {
      const res = await completion.generateCompletionWithMeta(request.prompt, {
        ...this.sampling(request),
        maxTokens,
        signal: hooks.signal,
        onToken: (t) => { tracked.firstToken(); clock.onTokens(t); },
        onTextChunk: nonEmpty(hooks.onText),
        disableContextShift: true,
      });
      return {
        text: res.response,
        toolCalls: [],
        finishReason: res.metadata.stopReason === "maxTokens" ? "length" : "stop",
        usage: { promptTokens, completionTokens: clock.tokens },
        timings: clock.timings(promptTokens),
      };
    } catch (err) {
      if (isAbort(err, hooks.signal)) throw new GenerationAbortedError();
      throw new EngineError(`generation failed: ${errorMessage(err)}`);
    } finally {
      tracked.done();
      completion.dispose({ disposeSequence: false });
      this.release(seq);
    }
  }

  async embed(inputs: string[], signal?: AbortSignal): Promise<EmbeddingResult> {
    // One embedding context per model, used by one request at a time.
    const run = this.embedQueue.then(async () => {
      this.embeddingContext ??= this.model.createEmbeddingContext({ contextSize: this.embeddingContextSize(), threads: this.options.threads });
      const ctx = await this.embeddingContext;
      const vectors: number[][] = [];
      let promptTokens = 0;
      for (const [i, input] of inputs.entries()) {
        if (signal?.aborted) throw new GenerationAbortedError();
        const tokens = this.model.tokenize(input);
        if (tokens.length > this.embeddingContextSize()) {
          throw new ContextLengthExceededError(tokens.length, this.embeddingContextSize(), `input[${i}] has ${tokens.length} tokens`, `input`);
        }
        promptTokens += tokens.length;
        const embedding = await ctx.getEmbeddingFor(tokens);
        vectors.push(Array.from(embedding.vector));
      }
      return { vectors, promptTokens };
    });
    this.embedQueue = run.catch(() => undefined);
    try {
      return await run;
    } catch (err) {
      if (err instanceof LmxError) throw err;
      throw new EngineError(`embedding failed: ${errorMessage(err)}`);
    }
  }

  async logprobs(prefix: number[], continuation: number[], signal?: AbortSignal): Promise<number[]> {
    const bos = this.model.tokens.shouldPrependBosToken && this.model.tokens.bos !== null ? [this.model.tokens.bos] : [];
    const tokens = [...bos, ...prefix, ...continuation] as Token[];
    if (tokens.length > this.contextLength) {
      throw new ContextLengthExceededError(tokens.length, this.contextLength, `the scored text has ${tokens.length} tokens`, "prompt");
    }
    const firstScored = bos.length + prefix.length;
    const seq = this.acquire();
    try {
      await seq.clearHistory();
      if (signal?.aborted) throw new GenerationAbortedError();
      // The distribution after token i predicts token i + 1; ask for it only where it is scored.
      const input = tokens.map((t, i) => (i >= firstScored - 1 && i < tokens.length - 1 ? ([t, { generateNext: { probabilities: true } }] as const) : t));
      const out = await seq.controlledEvaluate(input as Parameters<LlamaContextSequence["controlledEvaluate"]>[0]);
      if (signal?.aborted) throw new GenerationAbortedError();
      return continuation.map((token, k) => {
        const p = out[firstScored - 1 + k]?.next.probabilities?.get(token as Token) ?? 0;
        // Floor at the smallest float so a zero probability stays finite in averages.
        return Math.log(Math.max(p, Number.MIN_VALUE));
      });
    } catch (err) {
      if (err instanceof LmxError) throw err;
      throw new EngineError(`scoring failed: ${errorMessage(err)}`);
    } finally {
      // The sequence holds the scored text; the next request starts from a clean slate.
      await seq.clearHistory().catch(() => undefined);
      this.release(seq);
    }
  }

  private embeddingContextSize(): number {
    return Math.min(this.contextLength, this.model.trainContextSize || this.contextLength);
  }

  async unload(): Promise<void> {
    if (this.unloaded) return;
    this.unloaded = true;
    if (this.embeddingContext) await (await this.embeddingContext.catch(() => undefined))?.dispose();
    await this.context.dispose();
    await this.model.dispose();
  }
}

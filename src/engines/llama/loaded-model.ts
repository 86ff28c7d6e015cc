import type {
  ChatHistoryItem, ChatModelFunctions, ChatWrapper, GbnfJsonSchema, Llama, LlamaChatResponse, LlamaContext,
  LlamaContextSequence, LlamaGrammar, LlamaModel, Token, TokenBias,
} from "node-llama-cpp";
import type { FlashAttentionMode } from "../../config/load-settings.ts";
import { checkPromptLength, completionBudget } from "../../core/context.ts";
import type { EventSink, FinishReason } from "../../core/events.ts";
import type { ChatGeneration, ChatPrompt, GenerationRequest, JsonSchema, TextGeneration, ToolDefinition, EmbeddingInput, EmbeddingResult } from "../../core/request.ts";
import { withSamplingDefaults } from "../../core/sampling.ts";
import { cutShortNote, emitToolCalls, parseForcedCall, planChat } from "../../core/tools.ts";
import { ContextLengthExceededError, EngineError, errorMessage, GenerationAbortedError, InvalidRequestError, LmxError } from "../../errors.ts";
import type { LoadedModel, MemoryEstimate, ResolvedLoadSettings, ModelDescriptor, SpeculativeStatus } from "../types.ts";
import { DecodeGate } from "./batching.ts";
import { toChatHistory } from "./chat-history.ts";
import { LlamaEmbedder } from "./embeddings.ts";
import { checkPromptBytes, longestTokenBytes } from "./prompt-bound.ts";
import { ChatOutput, type ThoughtMarkers } from "./chat-output.ts";
import { GenerationClock, PromptReuse } from "./generation-meter.ts";
import type { StateSpace } from "./saved-states.ts";
import { SequencePool } from "./sequence-pool.ts";
import { generateInfill, generateText, until } from "./text-loop.ts";
import type { Speculation } from "./speculative.ts";
import { templateGuardOf, withTemplateGuard } from "./template-guard.ts";
import { scoreGenerated, tokenBiasFor } from "./token-logprobs.ts";
import { WrapperVariants, type WrapperChoice } from "./wrapper-variants.ts";
import { releaseFreedMemory } from "../../util/native-memory.ts";
type NodeLlamaCpp = typeof import("node-llama-cpp");

interface LlamaChatPlan {
  history: ChatHistoryItem[];
  functions?: ChatModelFunctions;
  grammar?: LlamaGrammar;
  /** tool_choice forced a call among these tools: the grammar-constrained reply is parsed into a tool call. */
  forced?: ToolDefinition[];
  promptTokens: Token[];
  wrapper: WrapperChoice;
}

const GRAMMAR_CACHE_LIMIT = 64;

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return signal?.aborted === true || (err instanceof Error && err.name === "AbortError");
}

export class LlamaLoadedModel implements LoadedModel {
  private readonly sequences: SequencePool<LlamaContextSequence>;
  private readonly grammarCache = new Map<string, LlamaGrammar>();
  private embedder: LlamaEmbedder | undefined;
  private unloaded = false;
  private eogBias: TokenBias | undefined;
  private longestTokenBytes: number | null | undefined;
  private readonly wrappers: WrapperVariants;

  constructor(
    private readonly nlc: NodeLlamaCpp,
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly chatWrapper: ChatWrapper,
    readonly descriptor: ModelDescriptor,
    readonly options: ResolvedLoadSettings,
    private readonly estimate: MemoryEstimate,
    private readonly gate: DecodeGate = new DecodeGate(),
    readonly flashAttention?: FlashAttentionMode,
    private readonly speculation?: Speculation,
    savedStates?: StateSpace,
  ) {
    const sequences = Array.from({ length: options.parallel }, () => context.getSequence({ tokenPredictor: speculation?.predictor() }));
    this.sequences = new SequencePool(sequences, savedStates);
    this.wrappers = new WrapperVariants(nlc, model, chatWrapper, (build) => templateGuardOf(nlc).synchronously(build));
  }

  /**
   * What was asked for, not what llama.cpp allocated: it pads each sequence's cells up (280 → 512),
   * and the extra room is memory, not a promise: a tested context of 280 must stay the limit.
   */
  private get longestToken(): number | undefined {
    this.longestTokenBytes ??= longestTokenBytes(this.model.fileInfo.metadata) ?? null;
    return this.longestTokenBytes ?? undefined;
  }

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

  async countChatTokens(prompt: ChatPrompt): Promise<number> {
    return (await this.planChat(prompt)).promptTokens.length;
  }

  speculative(): SpeculativeStatus | undefined {
    return this.speculation?.status();
  }

  memoryInUse(): MemoryEstimate {
    return this.estimate;
  }

  /**
   * The free sequence for this prompt (sequence-pool.ts): node-llama-cpp evaluates only what
   * follows the prefix the prompt shares with what the sequence holds.
   */
  private async acquire(prompt?: readonly Token[]): Promise<LlamaContextSequence> {
    const seq = await this.sequences.acquire(prompt);
    if (!seq) throw new EngineError(`no free sequence on model '${this.descriptor.id}': a stalled generation may still hold one; unload and load the model again`);
    return seq;
  }

  private release(seq: LlamaContextSequence): void {
    this.sequences.release(seq);
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

  private async planChat(prompt: ChatPrompt | ChatGeneration): Promise<LlamaChatPlan> {
    const contents = prompt.messages.map((m) => m.content);
    checkPromptBytes(contents, this.longestToken, this.contextLength, "messages", "messages");
    await checkPromptLength(contents, (text) => this.countTokens(text), this.contextLength, "messages");
    const plan = planChat(prompt);
    const wrapper = "kind" in prompt ? this.wrappers.choose(prompt) : { wrapper: this.chatWrapper, thinkingOff: false };
    let grammar: LlamaGrammar | undefined;
    let functions: ChatModelFunctions | undefined;
    let history: ChatHistoryItem[];
    if (plan.mode === "forced") {
      grammar = await this.grammarForSchema(plan.schema, "tools");
      history = toChatHistory(prompt.messages, plan.preamble);
    } else {
      history = toChatHistory(prompt.messages);
      if (plan.mode === "tools") {
        const defs: Record<string, ChatModelFunctions[string]> = {};
        for (const [i, t] of plan.tools.entries()) {
          // Validate each schema up front so a bad one is a 400, not a failure mid-generation.
          if (t.parameters) await this.grammarForSchema(t.parameters, `tools[${i}].function.parameters`);
          defs[t.name] = { description: t.description, params: t.parameters as GbnfJsonSchema | undefined };
        }
        functions = defs;
      }
      if (plan.mode === "text" && plan.format?.type === "json_object") grammar = await this.llama.getGrammarFor("json");
      else if (plan.mode === "text" && plan.format?.type === "json_schema") grammar = await this.grammarForSchema(plan.format.schema, "response_format.json_schema.schema");
    }

    // The chat wrapper renders the prompt here (in the template guard's worker) and in LlamaChat.generateResponse below.
    const { contextText } = await withTemplateGuard(this.nlc, () => wrapper.wrapper.generateContextState({
      chatHistory: history,
      availableFunctions: functions,
      documentFunctionParams: true,
    }));
    const promptTokens = contextText.tokenize(this.model.tokenizer);
    return { history, functions, grammar, forced: plan.mode === "forced" ? plan.tools : undefined, promptTokens, wrapper };
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

  private sampling(request: GenerationRequest) {
    const req = withSamplingDefaults(request);
    const penalize = req.repeatPenalty !== undefined || req.presencePenalty !== undefined || req.frequencyPenalty !== undefined;
    return {
      tokenBias: tokenBiasFor(this.nlc, this.model, req.logitBias, req.ignoreEos ? this.noEogBias() : undefined),
      temperature: req.temperature,
      topK: req.topK,
      topP: req.topP,
      minP: req.minP,
      seed: req.seed,
      repeatPenalty: penalize
        ? { penalty: req.repeatPenalty ?? 1, presencePenalty: req.presencePenalty, frequencyPenalty: req.frequencyPenalty, lastTokens: 64 }
        : (false as const),
    };
  }

  generate(request: GenerationRequest, emit: EventSink, signal: AbortSignal, stop?: AbortSignal): Promise<void> {
    return request.kind === "chat" ? this.chat(request, emit, signal, stop) : this.complete(request, emit, signal, stop);
  }

  private async chat(request: ChatGeneration, emit: EventSink, signal: AbortSignal, stop?: AbortSignal): Promise<void> {
    const plan = await this.planChat(request);
    const promptTokens = plan.promptTokens.length;
    const maxTokens = completionBudget(promptTokens, request.maxTokens, this.contextLength, "messages");
    const clock = new GenerationClock();
    const seq = await this.acquire(plan.promptTokens);
    const reuse = new PromptReuse(seq);
    const drafts = this.speculation?.meter(seq);
    const tracked = this.gate.track(() => emit({ type: "progress" }));
    const chat = new this.nlc.LlamaChat({ contextSequence: seq, chatWrapper: plan.wrapper.wrapper, autoDisposeSequence: false });
    // A forced tool call is raw JSON: it reaches the client as a tool call, not as text.
    const output = new ChatOutput(emit, { forced: plan.forced !== undefined, thoughtMarkers: this.thoughtMarkers(plan.wrapper.wrapper) });
    const sampling = this.sampling(request);
    let res: LlamaChatResponse<ChatModelFunctions>;
    /** What the reply put in the context after the prompt: thoughts, their markers, calls and all. */
    let replyTokens = 0;
    try {
      res = await chat.generateResponse(plan.history, {
        ...sampling,
        maxTokens,
        grammar: plan.grammar,
        functions: plan.functions,
        documentFunctionParams: plan.functions ? true : undefined,
        maxParallelFunctionCalls: plan.functions && request.parallelToolCalls === false ? 1 : undefined,
        onFunctionCallParamsChunk: plan.functions ? (chunk) => { tracked.firstToken(); reuse.promptEvaluated(); clock.onTokens([]); output.onFunctionCallParamsChunk(chunk); } : undefined,
        ...until(signal, stop),
        onResponseChunk: (chunk) => { tracked.firstToken(); reuse.promptEvaluated(); clock.onTokens(chunk.tokens); output.onResponseChunk(chunk); },
        budgets: plan.wrapper.thinkingOff ? { thoughtTokens: 0 } : request.thinkingBudget !== undefined ? { thoughtTokens: request.thinkingBudget } : undefined,
        // The context was checked to fit; shifting would drop the start of the conversation.
        contextShift: { strategy: "eraseFirstResponseAndKeepFirstSystem" },
      } as Parameters<typeof chat.generateResponse>[1]);
      reuse.promptEvaluated();
      if (signal.aborted) throw new GenerationAbortedError();
      if (request.logprobs !== undefined) {
        // Scoring is one batch, not a token per decode: the decode gate must not wait for it.
        tracked.done();
        const scored = await scoreGenerated(this.model, seq, plan.promptTokens, output.generated, { top: request.logprobs, bias: sampling.tokenBias });
        emit({ type: "logprobs", tokens: output.answerLogprobs(scored) });
      }
    } catch (err) {
      if (isAbort(err, signal)) throw new GenerationAbortedError();
      throw new EngineError(`generation failed: ${errorMessage(err)}`);
    } finally {
      replyTokens = Math.max(0, seq.contextTokens.length - promptTokens);
      tracked.done();
      chat.dispose({ disposeSequence: false });
      this.release(seq);
    }

    const stopped: "stop" | "length" = res.metadata.stopReason === "maxTokens" ? "length" : "stop";
    const final = res.functionCalls ?? [];
    // node-llama-cpp reports no total (thought markers and calls pass through no callback), so the
    // count is what the reply added to the context. Its last token is sampled but never evaluated:
    // cut by max_tokens that is the max_tokens-th; otherwise it is the end token, which is not
    // counted (as mlx-lm and OpenAI do not).
    clock.tokens = stopped === "length" ? maxTokens : replyTokens;
    const usage = { reasoningTokens: output.reasoningTokens, cachedTokens: reuse.cachedTokens(promptTokens), ...drafts?.() };
    if (plan.forced) {
      const parsed = parseForcedCall(res.response, plan.forced, cutShortNote(stopped, clock.tokens));
      // A call cut short by max_tokens is answered as far as it got (200, finish "length"), never a 500.
      if ("problem" in parsed && stopped === "length") {
        if (!output.endForced() && res.response) emit({ type: "text", text: res.response });
        clock.finish(emit, promptTokens, "length", usage);
        return;
      }
      // The grammar only lets a whole, valid call through: anything else is the engine failing.
      if ("problem" in parsed) throw new EngineError(parsed.problem, "invalid_tool_call");
      if (!output.endForced()) emitToolCalls(emit, [parsed.call]);
      clock.finish(emit, promptTokens, "tool_calls", usage);
      return;
    }
    const calls = output.finishCalls(final);
    clock.finish(emit, promptTokens, calls > 0 && stopped !== "length" ? "tool_calls" : stopped, usage);
  }

  /** Token counts of the wrapper's thought markers, which node-llama-cpp reports in no chunk. */
  private thoughtMarkers(wrapper: ChatWrapper): ThoughtMarkers {
    const thought = wrapper.settings.segments?.thought;
    // A thought the prompt opened ("openedOnStart") has no start marker in the reply.
    const count = (text: unknown) => (typeof text === "string" || this.nlc.isLlamaText(text) ? this.nlc.LlamaText(text).tokenize(this.model.tokenizer).length : 0);
    return { start: count(thought?.prefix), end: count(thought?.suffix) };
  }

  private async complete(request: TextGeneration, emit: EventSink, signal: AbortSignal, stop?: AbortSignal): Promise<void> {
    const infill = this.model.tokens.infill;
    if (request.suffix !== undefined && (infill.prefix === null || infill.suffix === null)) {
      throw new InvalidRequestError(`suffix: model '${this.descriptor.id}' has no fill-in-the-middle tokens, so it cannot complete between a prompt and a suffix`, "suffix", "unsupported_parameter");
    }
    const texts = request.suffix !== undefined ? [request.prompt, request.suffix] : [request.prompt];
    checkPromptBytes(texts, this.longestToken, this.contextLength, "prompt", "prompt");
    await checkPromptLength(texts, (text) => this.countTokens(text), this.contextLength, "prompt");
    // Control tokens written in a raw prompt (ChatML's <|im_start|>, a hand-rendered template) are
    // read as such, as llama-server and the MLX worker read them.
    const tokens = this.model.tokenize(request.prompt, true);
    // Fill-in-the-middle puts the suffix and up to four special tokens in the context too.
    const promptTokens = tokens.length + (request.suffix !== undefined ? this.model.tokenize(request.suffix).length + 4 : 0);
    const maxTokens = completionBudget(promptTokens, request.maxTokens, this.contextLength, "prompt");
    const clock = new GenerationClock();
    const bos = this.model.tokens.shouldPrependBosToken && this.model.tokens.bos !== null ? [this.model.tokens.bos] : [];
    // node-llama-cpp puts the BOS before the prompt: the sequence to reuse is the one that starts with both.
    const seq = await this.acquire(request.suffix !== undefined ? tokens : [...bos, ...tokens]);
    const reuse = new PromptReuse(seq);
    const drafts = this.speculation?.meter(seq);
    const tracked = this.gate.track(() => emit({ type: "progress" }));
    const sampling = this.sampling(request);
    const generated: Token[] = [];
    const onText = (text: string, t: readonly Token[]) => {
      tracked.firstToken();
      reuse.promptEvaluated();
      clock.onTokens(t);
      if (text) emit({ type: "text", text });
    };
    try {
      const stopReason = request.suffix !== undefined
        ? await generateInfill(this.nlc, seq, tokens, request.suffix, { ...sampling, maxTokens, signal, stop }, generated, onText)
        : await generateText(seq, this.model, [...bos, ...tokens], { ...sampling, maxTokens, signal, stop }, (text, t) => {
          for (const token of t) generated.push(token);
          onText(text, t);
        });
      // The raw prompt's count leaves its BOS out; fill-in-the-middle's counts it among the markers.
      const cachedTokens = reuse.cachedTokens(promptTokens, request.suffix !== undefined ? 0 : bos.length);
      if (signal.aborted) throw new GenerationAbortedError();
      if (request.logprobs !== undefined || request.scorePrompt) {
        // Scoring is one batch, not a token per decode: the decode gate must not wait for it.
        tracked.done();
        emit({ type: "logprobs", tokens: await scoreGenerated(this.model, seq, [...bos, ...tokens], generated, {
          top: request.logprobs ?? 0, bias: sampling.tokenBias, promptFrom: request.scorePrompt ? bos.length : undefined,
        }) });
      }
      clock.finish(emit, promptTokens, stopReason === "maxTokens" ? "length" : "stop", { cachedTokens, ...drafts?.() });
    } catch (err) {
      if (isAbort(err, signal)) throw new GenerationAbortedError();
      throw new EngineError(`generation failed: ${errorMessage(err)}`);
    } finally {
      tracked.done();
      this.release(seq);
    }
  }

  async embed(inputs: readonly EmbeddingInput[], signal?: AbortSignal): Promise<EmbeddingResult> {
    this.embedder ??= new LlamaEmbedder(this.model, this.embeddingContextSize(), this.options.threads);
    try {
      return await this.embedder.embed(inputs, signal);
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
    const seq = await this.acquire();
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
    await this.sequences.close();
    await this.embedder?.dispose();
    await this.context.dispose();
    await this.speculation?.dispose();
    await this.model.dispose();
    await releaseFreedMemory();
  }
}

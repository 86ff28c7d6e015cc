// The inference core's service: takes a sequence of a loaded model from the scheduler, runs the
// engine under a watchdog, and hands every event to the caller (an API adapter). Failures of any
// kind end the stream with one `error` event, so adapters have one place to handle them.
import { GenerationStalledError, OverloadedError } from "../errors.ts";
import { log } from "../log.ts";
import type { EventSink, GenerationEvent } from "./events.ts";
import { checkDimensions, checkEmbeddingInputs, normalizeEmbedding } from "./embeddings.ts";
import { trimAnswerWhitespace } from "./answer-text.ts";
import type { ApiLabel, RequestObserver } from "./observer.ts";
import { withReasoningFormat } from "./reasoning.ts";
import type { ChatPrompt, EmbeddingInput, EmbeddingResult, GenerationRequest, ReasoningFormat } from "./request.ts";
import { checkStops, stopAtStrings } from "./stop.ts";
import { checkTools } from "./tools.ts";

/** What the core needs of a loaded model (the engines' LoadedModel is one). */
export interface ModelRunner {
  /** `stop` is the soft stop: the engine finishes normally, early (engines/types.ts LoadedModel.generate). */
  generate(request: GenerationRequest, emit: EventSink, signal: AbortSignal, stop?: AbortSignal): Promise<void>;
  embed(inputs: readonly EmbeddingInput[], signal?: AbortSignal): Promise<EmbeddingResult>;
  /** Tokens the prompt takes once the model's chat template renders it (tools included). */
  countChatTokens(prompt: ChatPrompt): Promise<number>;
}

/** A loaded model and one of its sequences, held until `release` (the scheduler's Lease is one). */
export interface Lease {
  model: ModelRunner;
  /** Aborted when the client goes away or the model is unloaded under the request. */
  signal: AbortSignal;
  release(): void;
}

export interface LeaseSource {
  acquire(model: string, signal?: AbortSignal): Promise<Lease>;
}

/** How long a stalled engine may take to stop after its abort before its slot is given back regardless. */
const STALL_GRACE_MS = 10_000;

/** Events of several requests run in turn on one lease; `index` says whose event it is. */
export type IndexedSink = (event: GenerationEvent, index: number) => void;

export interface CoreOptions {
  /** A generation that emits nothing (no token, no prompt batch) for this long is stopped. */
  stallTimeoutMs: number;
  /** Where thoughts go when a request does not say (default "separate"). */
  reasoningFormat?: ReasoningFormat;
  /** Told about every request that names its API (metrics). */
  observer?: RequestObserver;
}

/** Events that mean the model has produced its first output. */
const OUTPUT = new Set<GenerationEvent["type"]>(["text", "reasoning", "tool_call_start"]);

export class InferenceCore {
  constructor(private readonly leases: LeaseSource, private readonly options: CoreOptions) {}

  /**
   * Runs `requests` one after another on one sequence of `model` (the list form of a completions
   * prompt; one request otherwise). Never rejects: a failure is the last event, `error`, carrying
   * the index of the request that failed; requests after it do not run.
   */
  async generate(model: string, requests: readonly GenerationRequest[], emit: IndexedSink, signal?: AbortSignal, api?: ApiLabel): Promise<void> {
    const observed = this.observed(model, api, emit, signal);
    try {
      await this.generateOn(model, requests, observed.emit, signal);
    } finally {
      observed.end();
    }
  }

  private async generateOn(model: string, requests: readonly GenerationRequest[], emit: IndexedSink, signal?: AbortSignal): Promise<void> {
    let index = 0;
    try {
      for (const r of requests) {
        if (r.kind === "chat") checkTools(r);
        checkStops(r.stop);
      }
      const lease = await this.leases.acquire(model, signal);
      // A stalled engine may still hold its sequence: the slot is given back once it lets go, or
      // after a grace period if it never does, so a wedged engine cannot block the queue forever.
      let lingering: Promise<void> | undefined;
      try {
        for (; index < requests.length; index++) {
          const i = index;
          await this.watched(model, lease, requests[i]!, (e) => emit(e, i), (engine) => (lingering = engine));
        }
      } catch (err) {
        // The lease was aborted by an unload, not by the client: say so instead of "client closed".
        if (lease.signal.aborted && !signal?.aborted) throw new OverloadedError(`model '${model}' was unloaded while generating; retry`);
        throw err;
      } finally {
        if (lingering) void this.afterGrace(model, lingering).then(() => lease.release());
        else lease.release();
      }
    } catch (err) {
      emit({ type: "error", error: err instanceof Error ? err : new Error(String(err)) }, index);
    }
  }

  /**
   * Runs `requests` on up to `lanes` sequences at once, each lane on its own lease: request i on
   * lane i mod lanes, a lane's requests in order (the `n` choices of a prompt run side by side; a
   * list of prompts runs down each lane). Never rejects: the first failure aborts the other lanes
   * and is the one `error` event.
   */
  async generateParallel(model: string, requests: readonly GenerationRequest[], lanes: number, emit: IndexedSink, signal?: AbortSignal, api?: ApiLabel): Promise<void> {
    const observed = this.observed(model, api, emit, signal);
    try {
      await this.parallel(model, requests, lanes, observed.emit, signal);
    } finally {
      observed.end();
    }
  }

  private async parallel(model: string, requests: readonly GenerationRequest[], lanes: number, emit: IndexedSink, signal?: AbortSignal): Promise<void> {
    const width = Math.min(lanes, requests.length);
    if (width <= 1) return this.generateOn(model, requests, emit, signal);
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    if (signal?.aborted) ac.abort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    let failed = false;
    try {
      await Promise.all(Array.from({ length: width }, (_, lane) => {
        const indices = requests.map((_, i) => i).filter((i) => i % width === lane);
        return this.generateOn(model, indices.map((i) => requests[i]!), (e, j) => {
          if (failed) return;
          if (e.type === "error") {
            failed = true;
            ac.abort();
          }
          emit(e, indices[j]!);
        }, ac.signal);
      }));
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * `emit` wrapped so the observer sees the request's first output, its usage (summed over its
   * generations) and, on `end`, its outcome. A request that names no API is not observed.
   */
  private observed(model: string, api: ApiLabel | undefined, emit: IndexedSink, signal?: AbortSignal): { emit: IndexedSink; end(): void } {
    const observation = api ? this.options.observer?.start(model, api) : undefined;
    if (!observation) return { emit, end: () => undefined };
    let first = true;
    let error: Error | undefined;
    return {
      emit: (e, i) => {
        if (first && OUTPUT.has(e.type)) {
          first = false;
          observation.firstToken();
        }
        if (e.type === "usage") observation.usage(e.usage);
        else if (e.type === "error") error = e.error;
        emit(e, i);
      },
      end: () => observation.end({ error, aborted: error !== undefined && signal?.aborted === true }),
    };
  }

  /**
   * One generation under the watchdog: when the engine goes quiet for the bound, it is aborted,
   * its late events are dropped, `onLinger` gets the promise of its end, and this throws
   * GenerationStalledError at once rather than waiting for an engine that may never answer.
   */
  private async watched(model: string, lease: Lease, request: GenerationRequest, emit: EventSink, onLinger: (engine: Promise<void>) => void): Promise<void> {
    const ac = new AbortController();
    const onLeaseAbort = () => ac.abort();
    if (lease.signal.aborted) ac.abort();
    else lease.signal.addEventListener("abort", onLeaseAbort, { once: true });
    const bound = this.options.stallTimeoutMs;
    let last = performance.now();
    let stalled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stall = new Promise<never>((_, reject) => {
      const check = () => {
        const quiet = performance.now() - last;
        if (quiet < bound) {
          timer = setTimeout(check, bound - quiet);
          return;
        }
        stalled = true;
        onLinger(engine.then(() => undefined, () => undefined));
        log.warn("generation stalled; stopping it", { model, quietMs: Math.round(quiet) });
        ac.abort();
        reject(new GenerationStalledError(model, bound / 1000));
      };
      timer = setTimeout(check, bound);
    });
    // Stop strings are matched here, once for every engine; a match ends the generation softly.
    const soft = request.stop && request.stop.some((s) => s.length > 0) ? new AbortController() : undefined;
    const format = (request.kind === "chat" ? request.reasoningFormat : undefined) ?? this.options.reasoningFormat ?? "separate";
    const formatted = withReasoningFormat(format, emit);
    // A chat answer is text between a template's markers; a completion is raw text, left exactly as generated.
    const shaped = request.kind === "chat" ? trimAnswerWhitespace(formatted) : formatted;
    const out = soft ? stopAtStrings(request.stop!, shaped, () => soft.abort()) : shaped;
    const engine = lease.model.generate(request, (e) => {
      if (stalled) return;
      last = performance.now();
      out(e);
    }, ac.signal, soft?.signal);
    try {
      await Promise.race([engine, stall]);
    } finally {
      clearTimeout(timer);
      lease.signal.removeEventListener("abort", onLeaseAbort);
      stall.catch(() => undefined);
      engine.catch(() => undefined);
    }
  }

  /** Resolves when the engine lets go, or after the grace period with an error logged. */
  private async afterGrace(model: string, engine: Promise<void>): Promise<void> {
    const grace = Math.min(this.options.stallTimeoutMs, STALL_GRACE_MS);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([engine.then(() => false), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), grace); })]);
    clearTimeout(timer);
    if (late) log.error("a stalled generation ignored its abort; its slot is given back anyway (the engine may hold the sequence until the model is reloaded)", { model, graceMs: grace });
  }

  /**
   * Tokens a chat prompt takes on `model` as its template renders it, without generating. It
   * takes a sequence like a generation (the model is loaded on first use), for a moment.
   */
  async countChatTokens(model: string, prompt: ChatPrompt, signal?: AbortSignal): Promise<number> {
    checkTools(prompt);
    const lease = await this.leases.acquire(model, signal);
    try {
      return await lease.model.countChatTokens(prompt);
    } finally {
      lease.release();
    }
  }

  /**
   * Unit-length embeddings of `inputs` (cut to their first `dimensions` components first, when
   * given), whatever the engine's pooling produced.
   */
  async embed(model: string, inputs: readonly EmbeddingInput[], options: { dimensions?: number } = {}, signal?: AbortSignal, api?: ApiLabel): Promise<EmbeddingResult> {
    const observation = api ? this.options.observer?.start(model, api) : undefined;
    try {
      const r = await this.embedOn(model, inputs, options, signal);
      observation?.usage({ promptTokens: r.promptTokens, completionTokens: 0 });
      observation?.end({ aborted: false });
      return r;
    } catch (err) {
      observation?.end({ error: err instanceof Error ? err : new Error(String(err)), aborted: signal?.aborted === true });
      throw err;
    }
  }

  private async embedOn(model: string, inputs: readonly EmbeddingInput[], options: { dimensions?: number }, signal?: AbortSignal): Promise<EmbeddingResult> {
    checkEmbeddingInputs(inputs);
    const { dimensions } = options;
    // A malformed value is refused before any engine work; the upper bound needs the vectors.
    if (dimensions !== undefined) checkDimensions(model, dimensions, Number.MAX_SAFE_INTEGER);
    const lease = await this.leases.acquire(model, signal);
    try {
      const r = await lease.model.embed(inputs, lease.signal);
      checkDimensions(model, dimensions, Math.min(...r.vectors.map((v) => v.length)));
      return { vectors: r.vectors.map((v) => normalizeEmbedding(v, dimensions)), promptTokens: r.promptTokens };
    } catch (err) {
      if (lease.signal.aborted && !signal?.aborted) throw new OverloadedError(`model '${model}' was unloaded while generating; retry`);
      throw err;
    } finally {
      lease.release();
    }
  }
}

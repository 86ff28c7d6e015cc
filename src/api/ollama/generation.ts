// What /api/chat and /api/generate share: the model's name, keep_alive, num_ctx, a request
// without a prompt (load or unload the model), and the answer streamed as NDJSON (Ollama's default)
// or whole.
import { Collector } from "../../core/collect.ts";
import type { GenerationRequest } from "../../core/request.ts";
import type { InferenceCore } from "../../core/service.ts";
import { InvalidRequestError } from "../../errors.ts";
import type { Scheduler } from "../../scheduler/scheduler.ts";
import { type StreamFormat, streamResponse } from "../sse.ts";
import { errorLine, ollamaError } from "./errors.ts";
import { OllamaReply, type ReplyKind } from "./reply.ts";
import { keepAliveSeconds, modelName } from "./requests.ts";
import type { Options } from "./schemas.ts";

export const NDJSON: StreamFormat = {
  contentType: "application/x-ndjson",
  frame: (data) => JSON.stringify(data) + "\n",
  error: errorLine,
};

export interface GenerationDeps {
  core: InferenceCore;
  scheduler: Scheduler;
}

export interface OllamaCall {
  kind: ReplyKind;
  /** The model as the client named it (echoed back), and its options. */
  name: string;
  stream: boolean | null | undefined;
  keepAlive: number | string | null | undefined;
  options: Options | null | undefined;
  /** Undefined: no prompt, so the request only loads the model, or unloads it with keep_alive 0. */
  request: () => GenerationRequest | undefined;
}

/**
 * options.num_ctx asks for a context; LMX sizes a model's context when it loads it (its load
 * settings, the probe, --ctx) and never reloads a model for one request. A num_ctx the model has
 * room for changes nothing (LMX never truncates a prompt); a larger one is refused, saying how
 * to load the model with more.
 */
async function checkNumCtx(scheduler: Scheduler, model: string, numCtx: number | null | undefined): Promise<void> {
  if (numCtx === undefined || numCtx === null) return;
  const status = await scheduler.get(model);
  const context = status.loadedContextLength ?? (await scheduler.resolveLoad(status.descriptor)).contextLength;
  if (numCtx > context) {
    throw new InvalidRequestError(
      `options.num_ctx: ${numCtx} is more than the ${context}-token context '${status.descriptor.id}' ${status.loadedContextLength ? "is loaded" : "loads"} with; ` +
      `load it with a larger one (lmx load ${status.descriptor.id} --ctx ${numCtx}, or its saved load defaults) or leave num_ctx out`,
      "options.num_ctx", "unsupported_parameter");
  }
}

/** Runs one Ollama generate or chat call: everything but the wire body's translation. */
export async function serveOllama({ core, scheduler }: GenerationDeps, call: OllamaCall, signal: AbortSignal): Promise<unknown> {
  const model = modelName(call.name);
  const reply = new OllamaReply(call.kind, call.name);
  const startedAt = performance.now();
  try {
    const keep = keepAliveSeconds(call.keepAlive);
    const request = call.request();
    const applyKeepAlive = () => {
      if (keep !== undefined) scheduler.keepAlive(model, keep);
    };
    if (!request) {
      if (keep === 0) {
        await scheduler.get(model);
        await scheduler.unload(model);
        return reply.lifecycle("unload", 0);
      }
      const lease = await scheduler.acquire(model, signal);
      lease.release();
      applyKeepAlive();
      return reply.lifecycle("load", performance.now() - startedAt);
    }
    await checkNumCtx(scheduler, model, call.options?.num_ctx);
    const collector = new Collector();
    const api = call.kind === "chat" ? "ollama.chat" : "ollama.generate";
    if (call.stream === false) {
      try {
        await core.generate(model, [request], collector.add, signal, api);
      } finally {
        applyKeepAlive();
      }
      return reply.whole(collector.result(), startedAt);
    }
    return await streamResponse(signal, NDJSON, async (send, streamSignal) => {
      try {
        await core.generate(model, [request], (e) => {
          collector.add(e);
          const piece = reply.piece(e);
          if (piece) send(piece);
        }, streamSignal, api);
        send(reply.final(collector.result(), startedAt));
      } catch (err) {
        throw ollamaError(err, call.name);
      } finally {
        applyKeepAlive();
      }
    });
  } catch (err) {
    throw ollamaError(err, call.name);
  }
}

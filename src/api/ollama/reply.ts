// The core's events and results as Ollama's chat and generate objects: streamed pieces, the final
// chunk with its statistics, and the whole answer of a request that is not streamed.
import type { GenerationResult } from "../../core/collect.ts";
import type { FinishReason, GenerationEvent } from "../../core/events.ts";
import type { ToolCall } from "../../core/request.ts";
import { EngineError } from "../../errors.ts";

export type ReplyKind = "chat" | "generate";

const ns = (ms: number) => Math.max(0, Math.round(ms * 1e6));

/** Ollama has no tool-call stop reason: a turn that ends in calls "stop"s. */
export function doneReason(reason: FinishReason): "stop" | "length" {
  return reason === "length" ? "length" : "stop";
}

/**
 * The final chunk's figures, in nanoseconds. The engines time the prompt's evaluation and the
 * generation; what came before them (loading the model, waiting for a free sequence) is load_duration.
 */
export function statsOf(r: GenerationResult, startedAt: number, now = performance.now()) {
  const total = now - startedAt;
  return {
    total_duration: ns(total),
    load_duration: ns(total - r.timings.prefillMs - r.timings.decodeMs),
    prompt_eval_count: r.usage.promptTokens,
    prompt_eval_duration: ns(r.timings.prefillMs),
    eval_count: r.usage.completionTokens,
    eval_duration: ns(r.timings.decodeMs),
  };
}

/** A call's arguments as the object Ollama sends; the core's are JSON text. */
function argumentsObject(call: ToolCall): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(call.arguments || "{}");
  } catch {
    throw new EngineError(`the model called '${call.name}' with arguments that are not JSON: ${call.arguments.slice(0, 200)}`, "invalid_tool_call");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new EngineError(`the model called '${call.name}' with arguments that are not a JSON object: ${call.arguments.slice(0, 200)}`, "invalid_tool_call");
  }
  return parsed as Record<string, unknown>;
}

/** `id` is an LMX extension: a tool result may name it (tool_call_id) to say which call it answers. */
function toolCallJson(call: ToolCall, index: number) {
  return { id: call.id, function: { index, name: call.name, arguments: argumentsObject(call) } };
}

/** One request's answer in the chat or generate shape, under the model name the client used. */
export class OllamaReply {
  private readonly calls = new Map<number, ToolCall>();

  constructor(private readonly kind: ReplyKind, private readonly model: string) {}

  private object(content: string, extra: { thinking?: string; toolCalls?: ToolCall[]; offset?: number } = {}, done = false) {
    const base = { model: this.model, created_at: new Date().toISOString() };
    const thinking = extra.thinking ? { thinking: extra.thinking } : {};
    if (this.kind === "generate") return { ...base, response: content, ...thinking, done };
    const calls = extra.toolCalls?.length ? { tool_calls: extra.toolCalls.map((c, i) => toolCallJson(c, (extra.offset ?? 0) + i)) } : {};
    return { ...base, message: { role: "assistant", content, ...thinking, ...calls }, done };
  }

  /** The piece an event streams as, if any. A tool call streams whole, once it ends, as Ollama sends it. */
  piece(e: GenerationEvent): object | undefined {
    switch (e.type) {
      case "text":
        return e.text ? this.object(e.text) : undefined;
      case "reasoning":
        return e.text ? this.object("", { thinking: e.text }) : undefined;
      case "tool_call_start":
        this.calls.set(e.index, { id: e.id, name: e.name, arguments: "" });
        return undefined;
      case "tool_call_delta": {
        const call = this.calls.get(e.index);
        if (call) call.arguments += e.arguments;
        return undefined;
      }
      case "tool_call_end": {
        const call = this.calls.get(e.index);
        return call ? this.object("", { toolCalls: [call], offset: e.index }) : undefined;
      }
      default:
        return undefined;
    }
  }

  /** The last line of a stream: no text, the stop reason and the figures. */
  final(r: GenerationResult, startedAt: number) {
    return { ...this.object("", {}, true), done_reason: doneReason(r.finishReason), ...statsOf(r, startedAt) };
  }

  /** A request that is not streamed: the whole answer in one object. */
  whole(r: GenerationResult, startedAt: number) {
    return { ...this.object(r.text, { thinking: r.reasoning, toolCalls: r.toolCalls }, true), done_reason: doneReason(r.finishReason), ...statsOf(r, startedAt) };
  }

  /** A request without a prompt that only loaded (or unloaded) the model. */
  lifecycle(reason: "load" | "unload", loadMs: number) {
    return { ...this.object(""), done: true, done_reason: reason, ...(reason === "load" ? { load_duration: ns(loadMs), total_duration: ns(loadMs) } : {}) };
  }
}

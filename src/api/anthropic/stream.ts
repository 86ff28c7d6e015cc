// A streamed message: the core's events as Anthropic's event sequence. message_start, then per
// content block content_block_start / content_block_delta… / content_block_stop (a thinking block
// gets its signature_delta just before it stops), then message_delta with the stop reason and
// usage, and message_stop. `ping` keeps the connection busy while nothing else is said: at each
// prompt batch the engine evaluated, and whenever the generation was quiet for a while.
import type { GenerationResult } from "../../core/collect.ts";
import type { GenerationEvent } from "../../core/events.ts";
import type { Send } from "../sse.ts";
import { stopReasonOf, THINKING_SIGNATURE, toolUseId, usageJson } from "./format.ts";

type BlockKind = "thinking" | "text" | "tool_use";

export class MessageStream {
  private started = false;
  private blocks = 0;
  private open: { kind: BlockKind; index: number; call?: number } | undefined;
  private lastSent = performance.now();

  constructor(private readonly send: Send, private readonly id: string, private readonly model: string) {}

  private emit(type: string, data: Record<string, unknown>): void {
    this.start();
    this.lastSent = performance.now();
    this.send({ type, ...data }, type);
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    // Prompt tokens are known once the prompt is evaluated: message_delta carries them.
    const message = { id: this.id, type: "message", role: "assistant", model: this.model, content: [], stop_reason: null, stop_sequence: null, usage: usageJson({ promptTokens: 0, completionTokens: 0 }) };
    this.send({ type: "message_start", message }, "message_start");
  }

  private close(): void {
    if (!this.open) return;
    if (this.open.kind === "thinking") this.emit("content_block_delta", { index: this.open.index, delta: { type: "signature_delta", signature: THINKING_SIGNATURE } });
    this.emit("content_block_stop", { index: this.open.index });
    this.open = undefined;
  }

  private block(kind: BlockKind, contentBlock: Record<string, unknown>, call?: number): number {
    this.close();
    const index = this.blocks++;
    this.open = { kind, index, call };
    this.emit("content_block_start", { index, content_block: contentBlock });
    return index;
  }

  /** The open block of `kind`, or a new one. */
  private blockOf(kind: "thinking" | "text"): number {
    if (this.open?.kind === kind) return this.open.index;
    return this.block(kind, kind === "thinking" ? { type: "thinking", thinking: "", signature: "" } : { type: "text", text: "" });
  }

  readonly on = (e: GenerationEvent): void => {
    switch (e.type) {
      case "reasoning":
        if (e.text) this.emit("content_block_delta", { index: this.blockOf("thinking"), delta: { type: "thinking_delta", thinking: e.text } });
        break;
      case "text":
        if (e.text) this.emit("content_block_delta", { index: this.blockOf("text"), delta: { type: "text_delta", text: e.text } });
        break;
      case "tool_call_start":
        this.block("tool_use", { type: "tool_use", id: toolUseId(e.id), name: e.name, input: {} }, e.index);
        break;
      case "tool_call_delta":
        if (e.arguments && this.open?.call === e.index) this.emit("content_block_delta", { index: this.open.index, delta: { type: "input_json_delta", partial_json: e.arguments } });
        break;
      case "tool_call_end":
        if (this.open?.call === e.index) this.close();
        break;
      case "progress":
        this.ping();
        break;
      default:
        break;
    }
  };

  ping(): void {
    this.emit("ping", {});
  }

  /** A ping when nothing was sent for `quietMs` (a model loading, a request queued, a slow token). */
  keepAlive(quietMs: number): void {
    if (performance.now() - this.lastSent >= quietMs) this.ping();
  }

  end(r: GenerationResult): void {
    this.close();
    this.emit("message_delta", { delta: stopReasonOf(r.finishReason, r.stopSequence), usage: usageJson(r.usage) });
    this.emit("message_stop", {});
  }
}

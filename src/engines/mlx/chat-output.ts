// The worker's split output (answer text, thinking, tool-call blocks) → the core's events. JSON
// tool calls (the Hermes/Qwen `<tool_call>` family, mlx-lm's json_tools parser) stream their
// arguments as they are written; other families arrive whole when their block closes, read by
// mlx-lm's own parser for that family. A block nobody can read goes back to the client as the
// text the model wrote (under tool_choice "auto" that is the honest answer), never an error.
import type { EventSink } from "../../core/events.ts";
import { JsonCallStream } from "../../core/json-call-stream.ts";
import { toolCallId } from "../../core/tools.ts";
import type { WorkerReply } from "./protocol.ts";

/** Families whose calls are one JSON object ({"name", "arguments" | "parameters"}): streamed while written. */
const JSON_FAMILIES = new Set(["json_tools", "llama3_json", "harmony"]);

interface Markers {
  /** The tool-call family: mlx-lm's parser module for the model, or LMX's own fallback (llama3_json, deepseek). */
  parser: string | null;
}

interface Block {
  text: string;
  stream: JsonCallStream | undefined;
  /** The event index of the call the stream started. */
  index: number | undefined;
  /** A call beyond the first under parallel_tool_calls false: nothing of it goes out. */
  dropped: boolean;
}

export class MlxChatOutput {
  private calls = 0;
  private readonly blocks = new Map<number, Block>();
  /** Calls beyond the first are dropped (parallel_tool_calls false); `onExtraCall` ends generation. */
  private readonly single: boolean;

  constructor(
    private readonly emit: EventSink,
    private readonly markers: Markers,
    options: { parallel: boolean; onExtraCall: () => void },
  ) {
    this.single = !options.parallel;
    this.onExtraCall = options.onExtraCall;
  }

  private readonly onExtraCall: () => void;

  get toolCalls(): number {
    return this.calls;
  }

  private allowed(): boolean {
    if (this.single && this.calls >= 1) {
      this.onExtraCall();
      return false;
    }
    return true;
  }

  readonly on = (e: WorkerReply): void => {
    switch (e.type) {
      case "text":
        if (e.text) this.emit({ type: "text", text: e.text });
        break;
      case "reasoning":
        if (e.text) this.emit({ type: "reasoning", text: e.text });
        break;
      case "tool_text": this.toolText(e.call, e.text); break;
      case "tool_end": this.toolEnd(e.call, e.calls, e.raw); break;
      default: break;
    }
  };

  private block(call: number): Block {
    let b = this.blocks.get(call);
    if (!b) {
      b = { text: "", stream: undefined, index: undefined, dropped: false };
      if (JSON_FAMILIES.has(this.markers.parser ?? "")) {
        const block = b;
        block.stream = new JsonCallStream({
          start: (name) => {
            if (!this.allowed()) { block.stream = undefined; block.dropped = true; return; }
            block.index = this.calls++;
            this.emit({ type: "tool_call_start", index: block.index, id: toolCallId(), name });
          },
          args: (fragment) => { if (block.index !== undefined) this.emit({ type: "tool_call_delta", index: block.index, arguments: fragment }); },
        });
      }
      this.blocks.set(call, b);
    }
    return b;
  }

  private toolText(call: number, text: string): void {
    const b = this.block(call);
    b.text += text;
    b.stream?.feed(text);
  }

  private toolEnd(call: number, parsed: { name: string; arguments: string }[] | null, raw: string): void {
    const b = this.block(call);
    this.blocks.delete(call);
    if (b.dropped) return;
    if (b.index !== undefined) {
      // Streamed: a cut call ends as far as it got (finish_reason "length" says so).
      if (b.stream && !b.stream.hasArguments && b.stream.complete) this.emit({ type: "tool_call_delta", index: b.index, arguments: "{}" });
      this.emit({ type: "tool_call_end", index: b.index });
      return;
    }
    if (parsed && parsed.length > 0) {
      for (const c of parsed) {
        if (!this.allowed()) return;
        const index = this.calls++;
        this.emit({ type: "tool_call_start", index, id: toolCallId(), name: c.name });
        this.emit({ type: "tool_call_delta", index, arguments: c.arguments });
        this.emit({ type: "tool_call_end", index });
      }
      return;
    }
    // Unreadable: the model's own words, markers and all, are the answer.
    if (raw) this.emit({ type: "text", text: raw });
  }
}

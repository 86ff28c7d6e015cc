// The core's events as Responses output items, in the order the model produced them: reasoning,
// message, function_call and custom_tool_call items. One shaper serves both answers: streamed, it
// sends each item's events as they happen (added, deltas, done, in OpenAI's order); not streamed,
// it sends nothing and its items are the output. So both carry exactly the same items.
import type { GenerationEvent } from "../../core/events.ts";
import { CustomInputStream } from "./custom-input.ts";
import { newItemId, type Item } from "./requests.ts";
import { customInputOf, type ToolSet } from "./tools.ts";

/** A stream event without its sequence number (the route numbers them). */
export type StreamEvent = { type: string } & Record<string, unknown>;

type Status = "completed" | "incomplete";

interface OpenText {
  kind: "reasoning" | "message";
  index: number;
  id: string;
  text: string;
}

interface OpenCall {
  index: number;
  item: Item;
  custom: boolean;
  args: string;
  input?: CustomInputStream;
}

const textPart = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] });
const reasoningPart = (text: string) => ({ type: "reasoning_text", text });

export class OutputShaper {
  readonly items: Item[] = [];
  private open: OpenText | undefined;
  private readonly calls = new Map<number, OpenCall>();

  constructor(private readonly tools: ToolSet, private readonly send: (event: StreamEvent) => void = () => undefined) {}

  readonly on = (e: GenerationEvent): void => {
    switch (e.type) {
      case "text":
        if (e.text) this.appendText("message", e.text);
        break;
      case "reasoning":
        if (e.text) this.appendText("reasoning", e.text);
        break;
      case "tool_call_start":
        this.startCall(e.index, e.id, e.name);
        break;
      case "tool_call_delta":
        this.callDelta(e.index, e.arguments);
        break;
      case "tool_call_end":
        this.endCall(e.index, "completed");
        break;
      default:
        break;
    }
  };

  /** Closes what is still open; `incomplete`: the budget or the context cut the generation. */
  finish(incomplete: boolean): void {
    const status: Status = incomplete ? "incomplete" : "completed";
    this.closeText(status);
    for (const index of [...this.calls.keys()]) this.endCall(index, status);
  }

  private textItem(open: OpenText, status: Status | "in_progress"): Item {
    if (open.kind === "reasoning") return { id: open.id, type: "reasoning", summary: [], content: status === "in_progress" ? [] : [reasoningPart(open.text)], status };
    return { id: open.id, type: "message", role: "assistant", status, content: status === "in_progress" ? [] : [textPart(open.text)] };
  }

  private appendText(kind: OpenText["kind"], text: string): void {
    if (this.open?.kind !== kind) {
      this.closeText("completed");
      const open: OpenText = { kind, index: this.items.length, id: newItemId(kind === "reasoning" ? "rs" : "msg"), text: "" };
      this.open = open;
      this.items.push(this.textItem(open, "in_progress"));
      this.send({ type: "response.output_item.added", output_index: open.index, item: this.textItem(open, "in_progress") });
      this.send({ type: "response.content_part.added", item_id: open.id, output_index: open.index, content_index: 0, part: kind === "reasoning" ? reasoningPart("") : textPart("") });
    }
    const open = this.open!;
    open.text += text;
    const where = { item_id: open.id, output_index: open.index, content_index: 0 };
    if (kind === "reasoning") this.send({ type: "response.reasoning_text.delta", ...where, delta: text });
    else this.send({ type: "response.output_text.delta", ...where, delta: text, logprobs: [] });
  }

  private closeText(status: Status): void {
    const open = this.open;
    if (!open) return;
    this.open = undefined;
    const item = this.textItem(open, status);
    this.items[open.index] = item;
    const where = { item_id: open.id, output_index: open.index, content_index: 0 };
    if (open.kind === "reasoning") {
      this.send({ type: "response.reasoning_text.done", ...where, text: open.text });
      this.send({ type: "response.content_part.done", ...where, part: reasoningPart(open.text) });
    } else {
      this.send({ type: "response.output_text.done", ...where, text: open.text, logprobs: [] });
      this.send({ type: "response.content_part.done", ...where, part: textPart(open.text) });
    }
    this.send({ type: "response.output_item.done", output_index: open.index, item });
  }

  private startCall(index: number, callId: string, modelName: string): void {
    this.closeText("completed");
    const tool = this.tools.byModelName.get(modelName);
    const custom = tool?.kind === "custom";
    const name = tool?.name ?? modelName;
    const namespace = tool?.namespace ? { namespace: tool.namespace } : {};
    const item: Item = custom
      ? { id: newItemId("ctc"), type: "custom_tool_call", status: "in_progress", call_id: callId, name, ...namespace, input: "" }
      : { id: newItemId("fc"), type: "function_call", status: "in_progress", call_id: callId, name, ...namespace, arguments: "" };
    const call: OpenCall = { index: this.items.length, item, custom, args: "", input: custom ? new CustomInputStream() : undefined };
    this.calls.set(index, call);
    this.items.push(item);
    this.send({ type: "response.output_item.added", output_index: call.index, item: { ...item } });
  }

  private callDelta(index: number, fragment: string): void {
    const call = this.calls.get(index);
    if (!call || !fragment) return;
    call.args += fragment;
    const where = { item_id: call.item.id, output_index: call.index };
    if (!call.custom) {
      this.send({ type: "response.function_call_arguments.delta", ...where, delta: fragment });
      return;
    }
    const decoded = call.input!.feed(fragment);
    if (decoded) this.send({ type: "response.custom_tool_call_input.delta", ...where, delta: decoded });
  }

  private endCall(index: number, status: Status): void {
    const call = this.calls.get(index);
    if (!call) return;
    this.calls.delete(index);
    const where = { item_id: call.item.id, output_index: call.index };
    let item: Item;
    if (call.custom) {
      const input = customInputOf(call.args);
      const streamed = call.input!.streamed;
      // Arguments of an unexpected shape were not streamed: the input goes out whole.
      if (input.startsWith(streamed) && input.length > streamed.length) {
        this.send({ type: "response.custom_tool_call_input.delta", ...where, delta: input.slice(streamed.length) });
      }
      this.send({ type: "response.custom_tool_call_input.done", ...where, input });
      item = { ...call.item, status, input };
    } else {
      this.send({ type: "response.function_call_arguments.done", ...where, name: call.item.name, arguments: call.args });
      item = { ...call.item, status, arguments: call.args };
    }
    this.items[call.index] = item;
    this.send({ type: "response.output_item.done", output_index: call.index, item });
  }
}

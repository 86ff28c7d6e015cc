// node-llama-cpp's streamed chat output → the core's events. Its chat wrappers already know each
// model family's thinking and tool-call syntax (Qwen, Llama 3.x, Mistral, gpt-oss harmony,
// DeepSeek, and templates it reads as Jinja); this turns their callbacks into reasoning, text and
// tool-call events as they happen, and counts the thinking tokens on the way.
import type { LlamaChatResponseChunk, LlamaChatResponseFunctionCallParamsChunk, Token } from "node-llama-cpp";
import type { EventSink, TokenLogprob } from "../../core/events.ts";
import { JsonCallStream } from "../../core/json-call-stream.ts";
import { toolCallId } from "../../core/tools.ts";

interface FinalCall {
  functionName: string;
  params: unknown;
}

/** How many tokens the wrapper's thought markers are (Qwen's "<think>\n" and "\n</think>": 2 each). */
export interface ThoughtMarkers {
  start: number;
  end: number;
}

export class ChatOutput {
  /** Thought and comment tokens, their markers included: node-llama-cpp reports markers in no chunk. */
  reasoningTokens = 0;
  /** node-llama-cpp's call index → whether its end was emitted. */
  private readonly calls = new Map<number, { ended: boolean }>();

  /** tool_choice forced a call: the grammar makes the answer one JSON call, streamed as a call. */
  private readonly forced: JsonCallStream | undefined;

  private readonly markers: ThoughtMarkers;

  constructor(private readonly emit: EventSink, options: { forced: boolean; thoughtMarkers?: ThoughtMarkers }) {
    this.markers = options.thoughtMarkers ?? { start: 0, end: 0 };
    if (options.forced) {
      this.forced = new JsonCallStream({
        start: (name) => emit({ type: "tool_call_start", index: 0, id: toolCallId(), name }),
        args: (fragment) => emit({ type: "tool_call_delta", index: 0, arguments: fragment }),
      });
    }
  }

  /** Ends the forced call if it started; false if the model never got as far as its name. */
  endForced(): boolean {
    if (!this.forced?.started) return false;
    if (this.forced.complete && !this.forced.hasArguments) this.emit({ type: "tool_call_delta", index: 0, arguments: "{}" });
    this.emit({ type: "tool_call_end", index: 0 });
    return true;
  }

  /** Every token of thoughts and answer, in order, and which of them are the answer's. */
  readonly generated: Token[] = [];
  private readonly answer: boolean[] = [];

  readonly onResponseChunk = (chunk: LlamaChatResponseChunk): void => {
    this.generated.push(...chunk.tokens);
    for (const _ of chunk.tokens) this.answer.push(chunk.type !== "segment");
    if (chunk.type === "segment") {
      // Thoughts, and harmony's "comment" preambles, are the model thinking aloud, not its answer.
      this.reasoningTokens += chunk.tokens.length;
      if (chunk.segmentType === "thought") {
        if (chunk.segmentStartTime) this.reasoningTokens += this.markers.start;
        if (chunk.segmentEndTime) this.reasoningTokens += this.markers.end;
      }
      if (chunk.text) this.emit({ type: "reasoning", text: chunk.text });
      return;
    }
    if (this.forced) this.forced.feed(chunk.text);
    else if (chunk.text) this.emit({ type: "text", text: chunk.text });
  };

  readonly onFunctionCallParamsChunk = (chunk: LlamaChatResponseFunctionCallParamsChunk): void => {
    let call = this.calls.get(chunk.callIndex);
    if (!call) {
      call = { ended: false };
      this.calls.set(chunk.callIndex, call);
      this.emit({ type: "tool_call_start", index: chunk.callIndex, id: toolCallId(), name: chunk.functionName });
    }
    if (chunk.paramsChunk) {
      this.emit({ type: "tool_call_delta", index: chunk.callIndex, arguments: chunk.paramsChunk });
    }
    if (chunk.done && !call.ended) {
      call.ended = true;
      this.emit({ type: "tool_call_end", index: chunk.callIndex });
    }
  };

  /**
   * Ends the calls: a finished call whose parameters never streamed (a call without parameters)
   * goes out whole; a call cut short (max_tokens) is ended as it stands, like OpenAI's. Returns
   * how many calls there were.
   */
  finishCalls(final: readonly FinalCall[]): number {
    final.forEach((c, index) => {
      if (this.calls.has(index)) return;
      const args = JSON.stringify(c.params ?? {});
      this.calls.set(index, { ended: false });
      this.emit({ type: "tool_call_start", index, id: toolCallId(), name: c.functionName });
      this.emit({ type: "tool_call_delta", index, arguments: args });
    });
    for (const [index, call] of [...this.calls.entries()].sort((a, b) => a[0] - b[0])) {
      if (call.ended) continue;
      call.ended = true;
      this.emit({ type: "tool_call_end", index });
    }
    return this.calls.size;
  }

  /** The answer's share of the logprobs of `generated`: logprobs describe the content, not the thoughts. */
  answerLogprobs(all: TokenLogprob[]): TokenLogprob[] {
    return all.filter((_, i) => this.answer[i]);
  }
}

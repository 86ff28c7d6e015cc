// Folds a generation's events into one result, for answers that are not streamed.
import type { FinishReason, GenerationEvent, Timings, TokenLogprob, Usage } from "./events.ts";
import type { GenerationRequest, ToolCall } from "./request.ts";

export interface GenerationResult {
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
  logprobs: TokenLogprob[];
  finishReason: FinishReason;
  /** The stop string that ended the reply, when one did. */
  stopSequence?: string;
  usage: Usage;
  timings: Timings;
}

export class Collector {
  private text = "";
  private reasoning = "";
  private readonly toolCalls: ToolCall[] = [];
  private readonly logprobs: TokenLogprob[] = [];
  private finishReason: FinishReason | undefined;
  private stopSequence: string | undefined;
  private usage: Usage = { promptTokens: 0, completionTokens: 0 };
  private timings: Timings = { prefillMs: 0, decodeMs: 0, prefillTokensPerSecond: 0, decodeTokensPerSecond: 0 };
  private error: Error | undefined;

  readonly add = (e: GenerationEvent): void => {
    switch (e.type) {
      case "text": this.text += e.text; break;
      case "reasoning": this.reasoning += e.text; break;
      case "tool_call_start": this.toolCalls[e.index] = { id: e.id, name: e.name, arguments: "" }; break;
      case "tool_call_delta": this.toolCalls[e.index]!.arguments += e.arguments; break;
      case "logprobs": this.logprobs.push(...e.tokens); break;
      case "usage": this.usage = e.usage; this.timings = e.timings; break;
      case "finish": this.finishReason = e.reason; this.stopSequence = e.stopSequence; break;
      case "error": this.error = e.error; break;
      case "tool_call_end":
      case "progress":
        break;
    }
  };

  /** The result, or the generation's error thrown. */
  result(): GenerationResult {
    if (this.error) throw this.error;
    if (!this.finishReason) throw new Error("generation ended without a finish event");
    return {
      text: this.text,
      reasoning: this.reasoning,
      toolCalls: this.toolCalls,
      logprobs: this.logprobs,
      finishReason: this.finishReason,
      ...(this.stopSequence !== undefined ? { stopSequence: this.stopSequence } : {}),
      usage: this.usage,
      timings: this.timings,
    };
  }
}

/** Runs one generation directly on a loaded model (no scheduler, no watchdog) and collects it. */
export async function generateOn(
  model: { generate(request: GenerationRequest, emit: (e: GenerationEvent) => void, signal: AbortSignal): Promise<void> },
  request: GenerationRequest,
  signal: AbortSignal = new AbortController().signal,
): Promise<GenerationResult> {
  const c = new Collector();
  await model.generate(request, c.add, signal);
  return c.result();
}

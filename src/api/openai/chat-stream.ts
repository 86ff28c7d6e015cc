// One choice of a streamed chat completion: the core's events as Chat Completions chunks, in the
// order OpenAI sends them. The first chunk carries the role; thoughts stream as
// delta.reasoning_content, the answer as delta.content; a tool call's first delta carries its
// index, id, type and name, and its arguments follow in fragments as they are generated.
import type { GenerationEvent, TokenLogprob } from "../../core/events.ts";
import { chatChunk } from "./format.ts";

export class ChatChoiceStream {
  private opened = false;

  constructor(
    private readonly send: (chunk: object) => void,
    private readonly id: string,
    private readonly model: string,
    private readonly created: number,
    private readonly index = 0,
  ) {}

  private chunk(delta: Record<string, unknown>): void {
    if (!this.opened) {
      this.opened = true;
      this.send(chatChunk(this.id, this.model, this.created, { role: "assistant", content: "" }, null, this.index));
    }
    this.send(chatChunk(this.id, this.model, this.created, delta, null, this.index));
  }

  readonly on = (e: GenerationEvent): void => {
    switch (e.type) {
      case "text":
        if (e.text) this.chunk({ content: e.text });
        break;
      case "reasoning":
        if (e.text) this.chunk({ reasoning_content: e.text });
        break;
      case "tool_call_start":
        this.chunk({ tool_calls: [{ index: e.index, id: e.id, type: "function", function: { name: e.name, arguments: "" } }] });
        break;
      case "tool_call_delta":
        if (e.arguments) this.chunk({ tool_calls: [{ index: e.index, function: { arguments: e.arguments } }] });
        break;
      default:
        break;
    }
  };

  /** The last chunks of this choice: its logprobs when asked (scored once it ended), then an empty delta with the finish reason. */
  end(finishReason: Parameters<typeof chatChunk>[4], logprobs?: TokenLogprob[]): void {
    if (!this.opened) {
      this.opened = true;
      this.send(chatChunk(this.id, this.model, this.created, { role: "assistant", content: "" }, null, this.index));
    }
    if (logprobs) this.send(chatChunk(this.id, this.model, this.created, {}, null, this.index, logprobs));
    this.send(chatChunk(this.id, this.model, this.created, {}, finishReason, this.index));
  }
}

// Where a thinking model's thoughts go (the server's --reasoning-format, or a request's
// reasoning_format): their own field ("separate", OpenAI-compatible servers' reasoning_content),
// back in the answer between <think> tags as the model wrote them ("inline", for clients that
// show raw output), or nowhere ("none"; they still count in usage). Applied after stop strings, so
// a stop string never matches inside a thought.
import type { EventSink } from "./events.ts";
import type { ReasoningFormat } from "./request.ts";

export const REASONING_FORMATS: readonly ReasoningFormat[] = ["separate", "inline", "none"];

export function isReasoningFormat(x: string): x is ReasoningFormat {
  return (REASONING_FORMATS as readonly string[]).includes(x);
}

export function withReasoningFormat(format: ReasoningFormat, emit: EventSink): EventSink {
  if (format === "separate") return emit;
  if (format === "none") return (e) => { if (e.type !== "reasoning") emit(e); };
  let open = false;
  return (e) => {
    if (e.type === "reasoning") {
      emit({ type: "text", text: open ? e.text : `<think>${e.text}` });
      open = true;
      return;
    }
    // Whatever comes after a thought (answer, tool call, the end) closes it first.
    if (open && e.type !== "progress" && e.type !== "logprobs") {
      open = false;
      emit({ type: "text", text: "</think>" });
    }
    emit(e);
  };
}

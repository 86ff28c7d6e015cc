// A chat answer's text without the whitespace templates put around thoughts and tool calls:
// Qwen-style templates write "</think>\n\n" before the answer and newlines between tool calls,
// which would otherwise reach clients as content "\n\n" beside a tool call, or an answer starting
// with blank lines. Whitespace right after a thought is dropped; any run of whitespace waits until
// text follows it, and is dropped when a tool call follows instead (or ends a reply that called
// tools). Otherwise the text is exactly the model's: an answer that starts with a tab without
// having thought keeps it, as do trailing spaces before a stop string. Only whitespace is held.
import type { EventSink } from "./events.ts";

export function trimAnswerWhitespace(emit: EventSink): EventSink {
  let started = false;
  let thought = false;
  let called = false;
  let pending = "";
  return (e) => {
    if (e.type === "text") {
      const text = !started && thought ? e.text.trimStart() : pending + e.text;
      const body = text.trimEnd();
      pending = text.slice(body.length);
      if (!body) return;
      started = true;
      emit({ type: "text", text: body });
      return;
    }
    if (e.type === "reasoning") thought = true;
    else if (e.type === "tool_call_start") {
      called = true;
      pending = "";
    } else if (e.type === "usage" && pending) {
      if (!called) emit({ type: "text", text: pending });
      pending = "";
    }
    emit(e);
  };
}

import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelResponse } from "node-llama-cpp";
import { InvalidRequestError } from "../../errors.ts";
import type { ChatMessage } from "../../core/request.ts";

/** Tool results and arguments travel as JSON text in the OpenAI format; templates want values. */
function parseJsonLoose(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * OpenAI messages → node-llama-cpp chat history. An assistant message with tool calls and the
 * tool messages answering them become one model response whose function calls carry their
 * results, which is how node-llama-cpp's chat wrappers render tool use. Ends with an open model
 * response for the engine to fill.
 */
export function toChatHistory(messages: ChatMessage[], systemPreamble?: string): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  if (systemPreamble) history.push({ type: "system", text: systemPreamble });
  let pending: Map<string, ChatModelFunctionCall> | undefined;

  messages.forEach((m, i) => {
    switch (m.role) {
      case "system":
        history.push({ type: "system", text: m.content });
        pending = undefined;
        break;
      case "user":
        history.push({ type: "user", text: m.content });
        pending = undefined;
        break;
      case "assistant": {
        const response: ChatModelResponse["response"] = [];
        // The wrapper renders an earlier turn's thought the way its template does (most drop all but the last).
        if (m.reasoning) response.push({ type: "segment", segmentType: "thought", text: m.reasoning, ended: true });
        if (m.content) response.push(m.content);
        pending = new Map();
        for (const call of m.toolCalls ?? []) {
          const item: ChatModelFunctionCall = { type: "functionCall", name: call.name, params: parseJsonLoose(call.arguments), result: undefined };
          response.push(item);
          pending.set(call.id, item);
        }
        history.push({ type: "model", response });
        break;
      }
      case "tool": {
        const call = pending?.get(m.toolCallId);
        if (!call) {
          throw new InvalidRequestError(
            `messages[${i}]: tool message refers to tool_call_id '${m.toolCallId}', which no preceding assistant message issued`,
            `messages[${i}].tool_call_id`);
        }
        call.result = parseJsonLoose(m.content);
        break;
      }
    }
  });

  for (const item of history) {
    if (item.type !== "model") continue;
    for (const part of item.response) {
      if (typeof part === "object" && part.type === "functionCall" && part.result === undefined) {
        throw new InvalidRequestError(`assistant tool call '${part.name}' has no tool message with its result`, "messages");
      }
    }
  }
  const last = history[history.length - 1];
  // A trailing assistant message with tool calls (and their results) is continued, like a prefill.
  if (!last || last.type !== "model") history.push({ type: "model", response: [] });
  return history;
}

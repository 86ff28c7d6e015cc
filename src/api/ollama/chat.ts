import { Elysia } from "elysia";
import { checkJsonSchema } from "../limits.ts";
import { type GenerationDeps, serveOllama } from "./generation.ts";
import { toChatRequest } from "./requests.ts";
import { ChatBody } from "./schemas.ts";

export function chatRoutes(deps: GenerationDeps) {
  return new Elysia().post("/api/chat", ({ body, request }) => {
    // Every JSON schema that becomes a grammar is bounded first.
    if (typeof body.format === "object" && body.format !== null) checkJsonSchema(body.format, "format");
    body.tools?.forEach((t, i) => {
      if (t.function.parameters) checkJsonSchema(t.function.parameters, `tools[${i}].function.parameters`);
    });
    return serveOllama(deps, {
      kind: "chat",
      name: body.model,
      stream: body.stream,
      keepAlive: body.keep_alive,
      options: body.options,
      request: () => (body.messages?.length ? toChatRequest(body) : undefined),
    }, request.signal);
  }, {
    body: ChatBody,
    detail: {
      summary: "Chat (Ollama)",
      tags: ["Ollama"],
      description: "Ollama's chat: NDJSON stream unless stream is false; tools with tool_calls whose arguments are objects, thinking in message.thinking, format as JSON or a JSON schema. tool_choice (none, auto, required or a named function) is an LMX extension with OpenAI's meaning.",
    },
  });
}

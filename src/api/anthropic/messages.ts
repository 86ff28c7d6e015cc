import { Elysia } from "elysia";
import { Collector } from "../../core/collect.ts";
import type { InferenceCore } from "../../core/service.ts";
import { sseResponse } from "../sse.ts";
import { anthropicSse } from "./errors.ts";
import { messageId, messageJson } from "./format.ts";
import { toChatPrompt, toGeneration } from "./requests.ts";
import { CountTokensBody, MessagesBody } from "./schemas.ts";
import { MessageStream } from "./stream.ts";

export interface MessagesOptions {
  /** A streamed answer quiet this long gets a `ping` (the first one starts the stream). */
  keepAliveMs?: number;
}

const KEEP_ALIVE_MS = 5000;

export function messagesRoutes(core: InferenceCore, options: MessagesOptions = {}) {
  const keepAliveMs = options.keepAliveMs ?? KEEP_ALIVE_MS;
  return new Elysia()
    .post("/v1/messages", async ({ body, request }) => {
      const generation = toGeneration(body);
      const id = messageId();
      const collector = new Collector();
      if (!body.stream) {
        await core.generate(body.model, [generation], collector.add, request.signal, "anthropic.messages");
        return messageJson(id, body.model, collector.result());
      }
      return sseResponse(request.signal, async (send, signal) => {
        const stream = new MessageStream(send, id, body.model);
        const timer = setInterval(() => stream.keepAlive(keepAliveMs), keepAliveMs);
        try {
          await core.generate(body.model, [generation], (e) => {
            collector.add(e);
            stream.on(e);
          }, signal, "anthropic.messages");
        } finally {
          clearInterval(timer);
        }
        // Throws the generation's error: before any output it becomes the HTTP status, after it an error event.
        stream.end(collector.result());
      }, anthropicSse);
    }, {
      body: MessagesBody,
      detail: {
        summary: "Create a message (Anthropic Messages API)",
        tags: ["Anthropic"],
        description: "Anthropic-compatible messages with streaming, tools, thinking blocks and stop sequences. Errors use Anthropic's {type: \"error\", error: {type, message}} shape.",
      },
    })
    .post("/v1/messages/count_tokens", async ({ body, request }) => ({
      input_tokens: await core.countChatTokens(body.model, toChatPrompt(body), request.signal),
    }), {
      body: CountTokensBody,
      detail: { summary: "Count a message's input tokens (Anthropic Messages API)", tags: ["Anthropic"], description: "The prompt rendered with the model's own chat template, tools included." },
    });
}

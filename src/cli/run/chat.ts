// One chat turn of `lmx run` against the server's /v1/chat/completions, streamed (SSE) or whole
// (--json), and the printer that writes a streamed reply as it arrives.

import { ApiError, type LmxClient } from "../client.ts";
import type { ChatOptions } from "./input.ts";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** What shows a thinking model's thoughts: dimmed on a terminal, in <think> tags in plain text, or nothing. */
export type ReasoningDisplay = "dim" | "tags" | "hidden";

export function chatBody(model: string, messages: ChatMessage[], opts: ChatOptions, stream: boolean, wantReasoning: boolean): Record<string, unknown> {
  return {
    model,
    messages,
    stream,
    // No max_tokens unless asked: the reply runs until the model stops or its context is full.
    ...(opts.maxTokens !== undefined ? { max_tokens: opts.maxTokens } : {}),
    ...(opts.temperature !== undefined ? { temperature: opts.temperature } : {}),
    ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    // Thoughts the user will not see need not cross the wire (they still count in usage).
    reasoning_format: wantReasoning ? "separate" : "none",
  };
}

const DIM = "\x1b[2m";
const UNDIM = "\x1b[22m";

/** Writes a streamed reply: thoughts first (as `display` says), a blank line, then the answer. */
export class ReplyPrinter {
  private inThought = false;
  private lastChar = "\n";
  private wroteAny = false;

  constructor(private readonly write: (text: string) => void, private readonly display: ReasoningDisplay) {}

  private out(text: string): void {
    if (!text) return;
    this.write(text);
    this.lastChar = text[text.length - 1]!;
    this.wroteAny = true;
  }

  reasoning(text: string): void {
    if (this.display === "hidden" || !text) return;
    if (!this.inThought) {
      this.inThought = true;
      this.out(this.display === "dim" ? DIM : "<think>\n");
    }
    this.out(text);
  }

  private closeThought(): void {
    if (!this.inThought) return;
    this.inThought = false;
    if (this.lastChar !== "\n") this.out("\n");
    this.out(this.display === "dim" ? `${UNDIM}\n` : "</think>\n\n");
  }

  content(text: string): void {
    if (!text) return;
    this.closeThought();
    this.out(text);
  }

  /** Ends the reply on a line of its own, so the next prompt or shell prompt starts cleanly. */
  end(): void {
    this.closeThought();
    if (this.wroteAny && this.lastChar !== "\n") this.out("\n");
  }
}

interface ChunkChoice {
  delta?: { content?: string | null; reasoning_content?: string | null };
  finish_reason?: string | null;
}

export interface StreamedReply {
  content: string;
  finishReason: string | null;
  /** The signal stopped the reply before the server finished it. */
  aborted: boolean;
}

/** Streams one reply into `printer`; an error the server sends mid-stream is thrown as an ApiError. */
export async function streamChat(client: LmxClient, body: Record<string, unknown>, printer: ReplyPrinter, signal: AbortSignal): Promise<StreamedReply> {
  let content = "";
  let finishReason: string | null = null;
  try {
    for await (const e of client.postStream("/v1/chat/completions", body, signal)) {
      if (e.data === "[DONE]") break;
      const chunk = JSON.parse(e.data) as { choices?: ChunkChoice[]; error?: { message?: string; code?: string | null } };
      if (chunk.error) throw new ApiError(500, chunk.error.message ?? "the server ended the reply with an error", chunk.error.code ?? null);
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      if (choice.delta?.reasoning_content) printer.reasoning(choice.delta.reasoning_content);
      if (choice.delta?.content) {
        printer.content(choice.delta.content);
        content += choice.delta.content;
      }
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    printer.end();
  }
  return { content, finishReason, aborted: signal.aborted && finishReason === null };
}

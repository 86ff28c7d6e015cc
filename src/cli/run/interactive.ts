// `lmx run MODEL` on a terminal: a chat that keeps its history across turns. Line editing and
// input history come from Node's built-in `node:readline` (Bun ships it): a well-kept library
// that every Node REPL uses, so nothing is added for it.

import { createInterface } from "node:readline";
import { errorMessage } from "../../errors.ts";
import { ApiError, ServerUnreachableError, type LmxClient } from "../client.ts";
import { chatBody, ReplyPrinter, streamChat, type ChatMessage, type ReasoningDisplay, type StreamedReply } from "./chat.ts";
import { CHAT_HELP, MultilineCollector, parseSlash, type ChatOptions } from "./input.ts";

type Read = { kind: "line"; text: string } | { kind: "eof" } | { kind: "interrupt"; hadText: boolean };

/**
 * Reads one line with editing and history. The interface lives only while a line is typed: during
 * a reply the terminal belongs to the Ctrl-C watcher, and keys typed then are not echoed into the answer.
 */
class LineReader {
  // readline adds each line to this array in place, so it outlives every interface it is lent to.
  private readonly history: string[] = [];

  read(prompt: string): Promise<Read> {
    return new Promise((resolve) => {
      // With the replies redirected to a file, the prompt and the typing still belong on the terminal.
      const output = process.stdout.isTTY ? process.stdout : process.stderr;
      const rl = createInterface({ input: process.stdin, output, terminal: true, history: this.history, historySize: 1000, removeHistoryDuplicates: true, prompt });
      let settled = false;
      const finish = (r: Read) => {
        if (settled) return;
        settled = true;
        rl.close();
        resolve(r);
      };
      rl.on("line", (text) => finish({ kind: "line", text }));
      rl.on("SIGINT", () => {
        const hadText = rl.line !== "";
        output.write("^C\n");
        finish({ kind: "interrupt", hadText });
      });
      rl.on("close", () => finish({ kind: "eof" }));
      rl.prompt();
    });
  }
}

/** Runs `work` with Ctrl-C (a raw 0x03 byte, or SIGINT from elsewhere) aborting its signal instead of ending the program. */
async function interruptible<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const stdin = process.stdin;
  const onData = (d: Buffer) => { if (d.includes(3)) abort.abort(); };
  const onSignal = () => abort.abort();
  stdin.setRawMode(true);
  stdin.on("data", onData);
  stdin.resume();
  process.on("SIGINT", onSignal);
  try {
    return await work(abort.signal);
  } finally {
    process.off("SIGINT", onSignal);
    stdin.off("data", onData);
    stdin.setRawMode(false);
    stdin.pause();
  }
}

export interface ChatSettings {
  model: string;
  system?: string;
  options: ChatOptions;
  display: ReasoningDisplay;
  color: boolean;
}

export async function chatLoop(client: LmxClient, settings: ChatSettings): Promise<number> {
  const { model, display } = settings;
  let system = settings.system;
  const options: ChatOptions = { ...settings.options };
  let history: ChatMessage[] = [];
  const reader = new LineReader();
  const block = new MultilineCollector();
  // Notes are part of the conversation's frame, not of the replies: on the terminal even when replies go to a file.
  const ui = process.stdout.isTTY ? process.stdout : process.stderr;
  const note = (text: string) => ui.write(settings.color ? `\x1b[2m${text}\x1b[22m\n` : `${text}\n`);
  // Ctrl-C at an empty prompt asks once; a second one in a row leaves.
  let armedExit = false;

  note(`Chatting with ${model}. Type /? for help, /bye to leave.`);
  for (;;) {
    const input = await reader.read(block.open ? "... " : ">>> ");
    if (input.kind === "eof") return 0;
    if (input.kind === "interrupt") {
      if (input.hadText || block.open) {
        block.reset();
        armedExit = false;
      } else if (armedExit) {
        return 0;
      } else {
        armedExit = true;
        note("Press Ctrl-C again, Ctrl-D or type /bye to leave.");
      }
      continue;
    }
    armedExit = false;
    const command = block.open ? null : parseSlash(input.text);
    if (command) {
      switch (command.kind) {
        case "bye":
          return 0;
        case "clear":
          history = [];
          note("Cleared the conversation.");
          break;
        case "help":
          note(CHAT_HELP);
          break;
        case "system":
          system = command.text || undefined;
          note(system ? "Set the system prompt." : "Removed the system prompt.");
          break;
        case "set":
          options[command.key] = command.value;
          note(command.value === undefined ? `Reset ${command.key} to the default.` : `Set ${command.key} to ${command.value}.`);
          break;
        case "invalid":
          note(command.message);
          break;
      }
      continue;
    }
    const text = block.push(input.text);
    if (text === null || text.trim() === "") continue;

    history.push({ role: "user", content: text });
    const messages = system ? [{ role: "system" as const, content: system }, ...history] : history;
    const printer = new ReplyPrinter((s) => process.stdout.write(s), display);
    let reply: StreamedReply;
    try {
      reply = await interruptible((signal) => streamChat(client, chatBody(model, messages, options, true, display !== "hidden"), printer, signal));
    } catch (err) {
      if (!(err instanceof ApiError || err instanceof ServerUnreachableError)) throw err;
      history.pop();
      process.stderr.write(`lmx: ${errorMessage(err)}\n`);
      continue;
    }
    // A stopped reply stays in the conversation as far as it got, as the user saw it.
    if (reply.content || !reply.aborted) history.push({ role: "assistant", content: reply.content });
    else history.pop();
    if (reply.finishReason === "length") note("(the reply reached its token limit)");
  }
}

import { loadSettingsToBody } from "../../api/admin/schemas.ts";
import type { Setting } from "../../config/settings.ts";
import { UsageError } from "../../errors.ts";
import { clientCommand } from "../client-command.ts";
import { ApiError, encodeId, type LmxClient } from "../client.ts";
import { chatBody, ReplyPrinter, streamChat, type ChatMessage, type ReasoningDisplay } from "../run/chat.ts";
import type { ChatOptions } from "../run/input.ts";
import { chatLoop } from "../run/interactive.ts";
import { combinePrompt, MAX_PROMPT_FILE_BYTES, parsePromptRef, readPipedStdin, resolvePromptRef } from "../run/prompt.ts";
import { loadFlags } from "./load.ts";

const runFlags = [
  { key: "system", kind: "string", flagOnly: true, placeholder: "TEXT", description: "System prompt." },
  { key: "temperature", kind: "string", flagOnly: true, placeholder: "X", description: "Sampling temperature from 0 (greedy) to 2 (default: the server's)." },
  { key: "maxTokens", kind: "int", min: 1, max: 1_048_576, flagOnly: true, placeholder: "N",
    description: "Longest reply in tokens (default: until the model stops or the context is full)." },
  { key: "seed", kind: "int", min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, flagOnly: true, placeholder: "N", description: "Random seed, for replies that repeat." },
  { key: "var", kind: "map", flagOnly: true, placeholder: "NAME=VALUE", description: "Value of a {{NAME}} placeholder in an @file.toml:KEY prompt; repeatable." },
  { key: "reasoning", kind: "string", default: "auto", flagOnly: true, placeholder: "auto|show|hide",
    description: "A thinking model's thoughts: 'auto' shows them dimmed on a terminal and leaves them out of piped output; 'show' also prints them piped, between <think> tags; 'hide' never shows them." },
  ...loadFlags.filter((f) => f.key !== "save"),
] as const satisfies readonly Setting[];

function parseTemperature(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const t = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(t) || t < 0 || t > 2) throw new UsageError(`--temperature: ${JSON.stringify(raw)} is not a number from 0 to 2`);
  return t;
}

function reasoningDisplay(mode: string, terminal: boolean): ReasoningDisplay {
  if (mode === "hide") return "hidden";
  if (mode === "show") return terminal ? "dim" : "tags";
  if (mode === "auto") return terminal ? "dim" : "hidden";
  throw new UsageError(`--reasoning: ${JSON.stringify(mode)} is not auto, show or hide`);
}

/** Loads through the admin API (as `lmx load`), with a spinner when a person watches stderr; returns the model's id. */
async function loadModel(client: LmxClient, model: string, body: Record<string, unknown>, progress: boolean): Promise<string> {
  const started = Date.now();
  let timer: ReturnType<typeof setInterval> | undefined;
  if (progress) {
    const frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";
    let i = 0;
    const draw = () => process.stderr.write(`\r${frames[i++ % frames.length]} loading ${model} ${Math.floor((Date.now() - started) / 1000)}s`);
    draw();
    timer = setInterval(draw, 100);
  }
  try {
    return (await client.post<{ id: string }>(`/admin/v1/models/${encodeId(model)}/load`, body)).id;
  } catch (err) {
    // An inference-scoped key may not use /admin; the chat request then loads the model itself.
    if (err instanceof ApiError && err.status === 403) return model;
    throw err;
  } finally {
    if (timer) {
      clearInterval(timer);
      process.stderr.write("\r\x1b[K");
    }
  }
}

export const run = clientCommand({
  summary: "Chat with a model, or send it one prompt and print the reply",
  usage: "run <model> [PROMPT | @file.md | @prompts.toml:KEY] [--var NAME=VALUE] [--system TEXT] [--temperature X] [--max-tokens N] [--seed N] [--json]",
  description: [
    "Loads the model on the running server, then:",
    "  lmx run MODEL \"PROMPT\"        streams the reply to stdout and exits",
    "  lmx run MODEL                 on a terminal, opens a chat (/? lists its commands)",
    "  echo hi | lmx run MODEL       reads piped stdin whole as the prompt; with a PROMPT argument",
    "                                too, the argument comes first, then a blank line, then stdin",
    `  lmx run MODEL @notes.md       the prompt is the file's text (up to ${MAX_PROMPT_FILE_BYTES / (1024 * 1024)} MiB)`,
    "  lmx run MODEL @p.toml:KEY     the prompt is a string in a TOML file (KEY may be dotted: table.key),",
    "                                with {{name}} placeholders filled from --var name=VALUE",
    "A prompt that starts with @ itself is written @@. Output to a pipe or file has no colours.",
    "--json prints the whole (non-streamed) chat completion object instead.",
  ].join("\n"),
  minArgs: 1,
  settings: runFlags,
  async run({ client, flags, args, json }) {
    const [model, ...words] = args as [string, ...string[]];
    const options: ChatOptions = { temperature: parseTemperature(flags.temperature), seed: flags.seed, maxTokens: flags.maxTokens };
    const terminalOut = process.stdout.isTTY === true;
    const display = reasoningDisplay(flags.reasoning, terminalOut);

    const ref = words.length ? parsePromptRef(words.join(" ")) : undefined;
    if (Object.keys(flags.var).length && ref?.kind !== "toml") throw new UsageError("--var fills placeholders of an @file.toml:KEY prompt, and no such prompt was given");
    const argText = ref && resolvePromptRef(ref, flags.var);
    const piped = process.stdin.isTTY ? undefined : await readPipedStdin();
    const prompt = combinePrompt(argText, piped);
    const interactive = words.length === 0 && process.stdin.isTTY === true;
    if (prompt === undefined && !interactive) throw new UsageError(words.length ? "the prompt is empty" : "no prompt: give one as an argument, as @file, or on stdin");
    if (interactive && json) throw new UsageError("--json needs a prompt (it prints one whole response)");

    const loadBody = loadSettingsToBody({ contextLength: flags.ctx, parallel: flags.parallel, threads: flags.threads, gpuLayers: flags.gpuLayers, ttl: flags.ttl });
    const id = await loadModel(client, model, loadBody, process.stderr.isTTY === true && !json);
    if (interactive) return chatLoop(client, { model: id, system: flags.system, options, display, color: terminalOut });

    const messages: ChatMessage[] = [...(flags.system ? [{ role: "system" as const, content: flags.system }] : []), { role: "user", content: prompt! }];
    if (json) {
      console.log(JSON.stringify(await client.post("/v1/chat/completions", chatBody(id, messages, options, false, true)), null, 2));
      return 0;
    }
    const abort = new AbortController();
    let interrupted = false;
    const onInt = () => { interrupted = true; abort.abort(); };
    // A reader that goes away (`| head`) has what it wanted: stop generating, quietly.
    let readerGone = false;
    const onPipeError = (err: NodeJS.ErrnoException) => {
      if (err.code !== "EPIPE") throw err;
      readerGone = true;
      abort.abort();
    };
    const write = (text: string) => {
      if (readerGone) return;
      try {
        process.stdout.write(text);
      } catch (err) {
        onPipeError(err as NodeJS.ErrnoException);
      }
    };
    process.once("SIGINT", onInt);
    process.stdout.on("error", onPipeError);
    try {
      await streamChat(client, chatBody(id, messages, options, true, display !== "hidden"), new ReplyPrinter(write, display), abort.signal);
    } finally {
      process.off("SIGINT", onInt);
      process.stdout.off("error", onPipeError);
    }
    return interrupted ? 130 : 0;
  },
});

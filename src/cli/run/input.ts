// What a line typed in `lmx run`'s chat means: a slash command, part of a `"""` block, or a prompt.
// Pure, so the rules are unit-tested without a terminal.

/** Generation settings a chat can change with `/set`, with the bounds the OpenAI API accepts. */
export interface ChatOptions {
  temperature?: number;
  seed?: number;
  maxTokens?: number;
}

const SETTABLE: Record<string, { key: keyof ChatOptions; min: number; max: number; integer: boolean; help: string }> = {
  temperature: { key: "temperature", min: 0, max: 2, integer: false, help: "sampling temperature, 0 (greedy) to 2" },
  seed: { key: "seed", min: -(2 ** 53), max: 2 ** 53, integer: true, help: "random seed for sampling" },
  max_tokens: { key: "maxTokens", min: 1, max: 1_048_576, integer: true, help: "longest reply in tokens" },
};

export type SlashCommand =
  | { kind: "bye" }
  | { kind: "clear" }
  | { kind: "help" }
  | { kind: "system"; text: string }
  | { kind: "set"; key: keyof ChatOptions; value: number | undefined }
  | { kind: "invalid"; message: string };

export const CHAT_HELP = [
  "Commands:",
  "  /bye                 Leave (so do Ctrl-D, or Ctrl-C twice at an empty prompt)",
  "  /clear               Forget the conversation (the system prompt stays)",
  "  /system TEXT         Set the system prompt (/system alone removes it)",
  ...Object.entries(SETTABLE).map(([name, s]) => `  ${`/set ${name} X`.padEnd(21)}${s.help[0]!.toUpperCase()}${s.help.slice(1)} (/set ${name} alone: the default)`),
  "  /? or /help          This help",
  "",
  'Start and end a multi-line message with """ lines. Ctrl-C stops a reply.',
].join("\n");

/** The command a line names, or null when the line is a prompt (it does not start with a slash and a word). */
export function parseSlash(line: string): SlashCommand | null {
  const m = /^\/(\S+)(?:\s+([\s\S]*))?$/.exec(line.trim());
  if (!m || !/^[a-z?]+$/i.test(m[1]!)) return null;
  const name = m[1]!.toLowerCase();
  const arg = (m[2] ?? "").trim();
  switch (name) {
    case "bye":
    case "exit":
    case "quit":
      return { kind: "bye" };
    case "clear":
      return { kind: "clear" };
    case "?":
    case "help":
      return { kind: "help" };
    case "system":
      return { kind: "system", text: arg };
    case "set":
      return parseSet(arg);
    default:
      return { kind: "invalid", message: `Unknown command '/${m[1]}'. Type /? for help.` };
  }
}

function parseSet(arg: string): SlashCommand {
  const [rawName = "", value, ...extra] = arg.split(/\s+/).filter(Boolean);
  const name = rawName.toLowerCase().replace(/-/g, "_");
  const spec = SETTABLE[name];
  if (!spec) return { kind: "invalid", message: `Usage: /set ${Object.keys(SETTABLE).join("|")} VALUE` };
  if (value === undefined) return { kind: "set", key: spec.key, value: undefined };
  const n = Number(value);
  if (extra.length || !Number.isFinite(n) || (spec.integer && !Number.isInteger(n)) || n < spec.min || n > spec.max) {
    return { kind: "invalid", message: `${name} must be ${spec.integer ? "an integer" : "a number"} from ${spec.min} to ${spec.max}` };
  }
  return { kind: "set", key: spec.key, value: n };
}

const FENCE = '"""';

/**
 * Gathers `"""` blocks: a line starting with `"""` opens one (text after it is the first line), a
 * line ending with `"""` closes it; `"""one line"""` is a block on its own. Lines outside a block
 * are complete at once.
 */
export class MultilineCollector {
  private lines: string[] | null = null;

  get open(): boolean {
    return this.lines !== null;
  }

  /** The finished message once a line completes one, else null (more lines wanted). */
  push(line: string): string | null {
    if (this.lines === null) {
      if (!line.startsWith(FENCE)) return line;
      const rest = line.slice(FENCE.length);
      if (rest.length >= FENCE.length && rest.endsWith(FENCE)) return rest.slice(0, -FENCE.length);
      this.lines = rest ? [rest] : [];
      return null;
    }
    if (!line.endsWith(FENCE)) {
      this.lines.push(line);
      return null;
    }
    const last = line.slice(0, -FENCE.length);
    const text = [...this.lines, ...(last ? [last] : [])].join("\n");
    this.lines = null;
    return text;
  }

  reset(): void {
    this.lines = null;
  }
}

// Where `lmx run`'s prompt comes from: the argument itself, a text file (`@notes.md`), a key of a
// TOML prompt collection (`@prompts.toml:review.short`) with `{{name}}` placeholders, and piped
// stdin. Parsing and filling are pure so they are unit-tested without files or a server.

import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { parse as parseToml, TomlError } from "smol-toml";
import { UsageError } from "../../errors.ts";

/** Largest prompt file read: far more text than any context holds, small enough to never stall. */
export const MAX_PROMPT_FILE_BYTES = 1024 * 1024;
/** Largest piped stdin read (the server's default request body limit). */
export const MAX_STDIN_BYTES = 16 * 1024 * 1024;

export type PromptRef =
  | { kind: "text"; text: string }
  | { kind: "file"; path: string }
  | { kind: "toml"; path: string; key: string };

/**
 * `@file.toml:KEY` → a TOML key, `@file` → a text file, `@@…` → the literal text `@…`, anything
 * else → the text itself.
 */
export function parsePromptRef(arg: string): PromptRef {
  if (arg.startsWith("@@")) return { kind: "text", text: arg.slice(1) };
  if (!arg.startsWith("@")) return { kind: "text", text: arg };
  const rest = arg.slice(1);
  const toml = /^(.+\.toml):(.*)$/i.exec(rest);
  if (toml) {
    if (!toml[2]) throw new UsageError(`${arg}: name a key after the colon, e.g. @${toml[1]}:KEY`);
    return { kind: "toml", path: toml[1]!, key: toml[2] };
  }
  if (/\.toml$/i.test(rest)) throw new UsageError(`${arg}: a TOML prompt file needs a key, e.g. @${rest}:KEY`);
  if (!rest) throw new UsageError("'@' needs a file name, e.g. @prompt.md");
  return { kind: "file", path: rest };
}

type Table = { [key: string]: unknown };
const isTable = (x: unknown): x is Table => typeof x === "object" && x !== null && !Array.isArray(x) && !(x instanceof Date);

/** Every string key of a TOML document, dotted, for "did you mean" lists. */
function stringKeys(table: Table, prefix = ""): string[] {
  return Object.entries(table).flatMap(([k, v]) => (isTable(v) ? stringKeys(v, `${prefix}${k}.`) : typeof v === "string" ? [prefix + k] : []));
}

/**
 * The string at `key` in a parsed TOML document: a top-level key (which may itself contain dots
 * when quoted in the file) or a dotted path through tables.
 */
export function lookupTomlKey(doc: Table, key: string, file: string): string {
  let value: unknown = doc[key];
  if (value === undefined) {
    value = doc;
    for (const part of key.split(".")) value = isTable(value) ? value[part] : undefined;
  }
  if (typeof value === "string") return value;
  const known = stringKeys(doc);
  const list = known.length ? ` (prompts there: ${known.slice(0, 20).join(", ")}${known.length > 20 ? ", …" : ""})` : "";
  if (value === undefined) throw new UsageError(`no key '${key}' in ${file}${list}`);
  throw new UsageError(`'${key}' in ${file} is ${isTable(value) ? "a table" : `a ${Array.isArray(value) ? "list" : typeof value}`}, not a prompt string${list}`);
}

export function parseTomlPrompts(text: string, file: string): Table {
  try {
    return parseToml(text) as Table;
  } catch (err) {
    const why = err instanceof TomlError ? `line ${err.line}, column ${err.column}: ${err.message.split("\n")[0]}` : String(err);
    throw new UsageError(`${file} is not valid TOML (${why})`);
  }
}

const PLACEHOLDER = /\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}/g;

/** Replaces every `{{name}}` with its value; names without a value are one error naming them all. */
export function fillPlaceholders(template: string, vars: Record<string, string>): string {
  const missing = [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1]!).filter((n) => !Object.hasOwn(vars, n)))];
  if (missing.length) {
    throw new UsageError(`the prompt's placeholder${missing.length > 1 ? "s" : ""} ${missing.map((n) => `{{${n}}}`).join(", ")} ${missing.length > 1 ? "have" : "has"} no value; pass ${missing.map((n) => `--var ${n}=VALUE`).join(" ")}`);
  }
  return template.replace(PLACEHOLDER, (_, name: string) => vars[name]!);
}

/**
 * The argument first, then a blank line, then what was piped in; either may be absent. Trailing
 * whitespace (a file's last newline) goes: it would only end the user's turn with a blank line.
 */
export function combinePrompt(arg: string | undefined, piped: string | undefined): string | undefined {
  const parts = [arg, piped].map((p) => p?.replace(/\s+$/, "")).filter((p): p is string => p !== undefined && p !== "");
  return parts.length ? parts.join("\n\n") : undefined;
}

/** Reads a whole regular file, refusing more than `limit` bytes. */
function readBounded(fd: number, limit: number, what: string): string {
  const chunks: Buffer[] = [];
  let total = 0;
  const buf = Buffer.alloc(64 * 1024);
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    total += n;
    if (total > limit) throw new UsageError(`${what} is larger than ${limit / (1024 * 1024)} MiB`);
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString("utf8");
}

export function readPromptFile(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read prompt file ${path}: ${code === "ENOENT" ? "no such file" : code ?? String(err)}`);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new UsageError(`prompt file ${path} is not a regular file`);
    return readBounded(fd, MAX_PROMPT_FILE_BYTES, `prompt file ${path}`);
  } finally {
    closeSync(fd);
  }
}

/** Piped or redirected stdin, read whole; undefined for a terminal or nothing attached (/dev/null, closed). */
export async function readPipedStdin(): Promise<string | undefined> {
  let st;
  try {
    st = fstatSync(0);
  } catch {
    return undefined;
  }
  // A character device is a terminal or /dev/null: neither holds a prompt, and a terminal would block.
  if (!(st.isFIFO() || st.isFile() || st.isSocket())) return undefined;
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of Bun.stdin.stream()) {
    total += chunk.byteLength;
    if (total > MAX_STDIN_BYTES) throw new UsageError(`standard input is larger than ${MAX_STDIN_BYTES / (1024 * 1024)} MiB`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** The prompt text a reference stands for, with placeholders filled for TOML prompts. */
export function resolvePromptRef(ref: PromptRef, vars: Record<string, string>): string {
  if (ref.kind === "text") return ref.text;
  if (ref.kind === "file") return readPromptFile(ref.path);
  return fillPlaceholders(lookupTomlKey(parseTomlPrompts(readPromptFile(ref.path), ref.path), ref.key, ref.path), vars);
}

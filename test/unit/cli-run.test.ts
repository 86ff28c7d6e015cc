import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chatBody, ReplyPrinter, type ReasoningDisplay } from "../../src/cli/run/chat.ts";
import { MultilineCollector, parseSlash } from "../../src/cli/run/input.ts";
import { combinePrompt, fillPlaceholders, lookupTomlKey, MAX_PROMPT_FILE_BYTES, parsePromptRef, parseTomlPrompts, readPromptFile, resolvePromptRef } from "../../src/cli/run/prompt.ts";
import { UsageError } from "../../src/errors.ts";

describe("prompt references", () => {
  test("text, @file, @file.toml:KEY, @@ escape", () => {
    expect(parsePromptRef("hello")).toEqual({ kind: "text", text: "hello" });
    expect(parsePromptRef("@notes.md")).toEqual({ kind: "file", path: "notes.md" });
    expect(parsePromptRef("@dir/p.toml:review.short")).toEqual({ kind: "toml", path: "dir/p.toml", key: "review.short" });
    expect(parsePromptRef("@P.TOML:k")).toEqual({ kind: "toml", path: "P.TOML", key: "k" });
    expect(parsePromptRef("@@handle says hi")).toEqual({ kind: "text", text: "@handle says hi" });
  });

  test("a TOML file without a key, or a bare @, is a usage error", () => {
    expect(() => parsePromptRef("@p.toml")).toThrow("needs a key");
    expect(() => parsePromptRef("@p.toml:")).toThrow("name a key");
    expect(() => parsePromptRef("@")).toThrow(UsageError);
  });
});

describe("TOML keys", () => {
  const doc = parseTomlPrompts('top = "T"\n"a.b" = "quoted"\n[review]\nshort = "S"\nn = 3\n[review.deep]\nlong = "L"\n', "p.toml");

  test("top-level, quoted dotted, and table paths", () => {
    expect(lookupTomlKey(doc, "top", "p.toml")).toBe("T");
    expect(lookupTomlKey(doc, "a.b", "p.toml")).toBe("quoted");
    expect(lookupTomlKey(doc, "review.short", "p.toml")).toBe("S");
    expect(lookupTomlKey(doc, "review.deep.long", "p.toml")).toBe("L");
  });

  test("missing keys and non-strings name what is there", () => {
    expect(() => lookupTomlKey(doc, "review.nope", "p.toml")).toThrow("no key 'review.nope' in p.toml (prompts there: top, a.b, review.short, review.deep.long)");
    expect(() => lookupTomlKey(doc, "review", "p.toml")).toThrow("'review' in p.toml is a table, not a prompt string");
    expect(() => lookupTomlKey(doc, "review.n", "p.toml")).toThrow("is a number");
  });

  test("invalid TOML says where", () => {
    expect(() => parseTomlPrompts('a = "x"\nb = \n', "bad.toml")).toThrow(/^bad\.toml is not valid TOML \(line 2/);
  });
});

describe("placeholders", () => {
  test("filled from vars, with optional spaces, repeated names", () => {
    expect(fillPlaceholders("{{a}} and {{ b }} and {{a}}", { a: "1", b: "2" })).toBe("1 and 2 and 1");
    expect(fillPlaceholders("no placeholders {x}", {})).toBe("no placeholders {x}");
  });

  test("a value is inserted as is, never expanded again", () => {
    expect(fillPlaceholders("{{a}}", { a: "{{b}} $& $1" })).toBe("{{b}} $& $1");
  });

  test("missing values are one error naming each", () => {
    expect(() => fillPlaceholders("{{city}} {{day}} {{city}}", {})).toThrow("placeholders {{city}}, {{day}} have no value; pass --var city=VALUE --var day=VALUE");
    expect(() => fillPlaceholders("{{day}}", { city: "x" })).toThrow("placeholder {{day}} has no value");
    expect(() => fillPlaceholders("{{toString}}", {})).toThrow("{{toString}}");
  });
});

describe("prompt files", () => {
  test("size is bounded; a directory is refused; TOML refs resolve with vars", () => {
    const dir = mkdtempSync(join(tmpdir(), "lmx-prompt-"));
    try {
      writeFileSync(join(dir, "big.md"), "x".repeat(MAX_PROMPT_FILE_BYTES + 1));
      expect(() => readPromptFile(join(dir, "big.md"))).toThrow("larger than 1 MiB");
      expect(() => readPromptFile(dir)).toThrow("not a regular file");
      writeFileSync(join(dir, "p.toml"), '[t]\nk = "Hi {{who}}"\n');
      expect(resolvePromptRef({ kind: "toml", path: join(dir, "p.toml"), key: "t.k" }, { who: "Ann" })).toBe("Hi Ann");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("argument, blank line, stdin; blanks ignored", () => {
    expect(combinePrompt("Summarize:", "text\n\n")).toBe("Summarize:\n\ntext");
    expect(combinePrompt(undefined, "only stdin\n")).toBe("only stdin");
    expect(combinePrompt("only arg", "  \n")).toBe("only arg");
    expect(combinePrompt("from a file\n", undefined)).toBe("from a file");
    expect(combinePrompt(undefined, undefined)).toBeUndefined();
  });
});

describe("chat input", () => {
  test("slash commands", () => {
    expect(parseSlash("/bye")).toEqual({ kind: "bye" });
    expect(parseSlash("  /clear ")).toEqual({ kind: "clear" });
    expect(parseSlash("/?")).toEqual({ kind: "help" });
    expect(parseSlash("/system Be brief.\nReally.")).toEqual({ kind: "system", text: "Be brief.\nReally." });
    expect(parseSlash("/system")).toEqual({ kind: "system", text: "" });
    expect(parseSlash("/set temperature 0.7")).toEqual({ kind: "set", key: "temperature", value: 0.7 });
    expect(parseSlash("/set max-tokens 64")).toEqual({ kind: "set", key: "maxTokens", value: 64 });
    expect(parseSlash("/set seed")).toEqual({ kind: "set", key: "seed", value: undefined });
  });

  test("bad commands explain themselves; other text is a prompt", () => {
    expect(parseSlash("/frob")).toEqual({ kind: "invalid", message: "Unknown command '/frob'. Type /? for help." });
    expect(parseSlash("/set temperature 3")).toEqual({ kind: "invalid", message: "temperature must be a number from 0 to 2" });
    expect(parseSlash("/set seed 1.5")).toMatchObject({ kind: "invalid" });
    expect(parseSlash("/set temperature abc")).toMatchObject({ kind: "invalid" });
    expect(parseSlash("/set top_p 1")).toMatchObject({ kind: "invalid", message: expect.stringContaining("Usage: /set") });
    expect(parseSlash("hello /bye")).toBeNull();
    expect(parseSlash("/usr/bin is a path")).toBeNull();
  });

  test('""" blocks', () => {
    const c = new MultilineCollector();
    expect(c.push("plain")).toBe("plain");
    expect(c.push('"""')).toBeNull();
    expect(c.open).toBe(true);
    expect(c.push("line one")).toBeNull();
    expect(c.push("")).toBeNull();
    expect(c.push('line three"""')).toBe("line one\n\nline three");
    expect(c.open).toBe(false);
    expect(c.push('"""first')).toBeNull();
    expect(c.push('"""')).toBe("first");
    expect(c.push('"""one line"""')).toBe("one line");
    c.push('"""');
    c.reset();
    expect(c.push("after reset")).toBe("after reset");
  });
});

describe("reply printer and request body", () => {
  const print = (display: ReasoningDisplay, parts: [("r" | "c"), string][]) => {
    let out = "";
    const p = new ReplyPrinter((s) => (out += s), display);
    for (const [kind, text] of parts) kind === "r" ? p.reasoning(text) : p.content(text);
    p.end();
    return out;
  };
  const parts: [("r" | "c"), string][] = [["r", "Think"], ["r", "ing."], ["c", "Answer"], ["c", "."]];

  test("thoughts dimmed, in tags, or hidden; the reply ends with a newline", () => {
    expect(print("dim", parts)).toBe("\x1b[2mThinking.\n\x1b[22m\nAnswer.\n");
    expect(print("tags", parts)).toBe("<think>\nThinking.\n</think>\n\nAnswer.\n");
    expect(print("hidden", parts)).toBe("Answer.\n");
    expect(print("hidden", [["c", "done\n"]])).toBe("done\n");
    expect(print("tags", [["r", "only thought"]])).toBe("<think>\nonly thought\n</think>\n\n");
    expect(print("hidden", [["r", "x"]])).toBe("");
  });

  test("no max_tokens unless given; reasoning only when shown", () => {
    const m = [{ role: "user" as const, content: "hi" }];
    expect(chatBody("m", m, {}, true, false)).toEqual({ model: "m", messages: m, stream: true, reasoning_format: "none" });
    expect(chatBody("m", m, { temperature: 0, seed: 3, maxTokens: 9 }, false, true)).toEqual({ model: "m", messages: m, stream: false, temperature: 0, seed: 3, max_tokens: 9, reasoning_format: "separate" });
  });
});

// The tool-call and thinking syntax of the model families people run on MLX, read the way a
// generation reads it: scripted model output, cut into small pieces, through the worker's
// OutputSplitter and mlx-lm's own parser for each family (the real modules of the runtime), then
// through the MLX engine's MlxChatOutput into the core's events. No model: the output is what a
// model of that family writes.
import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { GenerationEvent } from "../src/core/events.ts";
import { MlxChatOutput } from "../src/engines/mlx/chat-output.ts";
import type { WorkerReply } from "../src/engines/mlx/protocol.ts";
import { REPO_ROOT } from "./fixtures/prepare.ts";
import { mlxTestEnv, type MlxTestEnv } from "./helpers/mlx.ts";

const WORKER = join(REPO_ROOT, "native", "mlx_worker");

let env: MlxTestEnv;
beforeAll(async () => {
  env = await mlxTestEnv();
}, 600_000);

interface Family {
  /** mlx-lm's tool parser module. */
  parser: string;
  think?: [string, string];
  output: string;
  tools?: object[];
}

const weather = { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } } } } };

/** The worker's side in Python: split `output` in 3-character pieces and send what the worker would. */
function workerReplies(f: Family): WorkerReply[] {
  const script = `
import json, sys, importlib
sys.path.insert(0, ${JSON.stringify(WORKER)})
from textfilter import OutputSplitter, parse_tool_block, TEXT, THINK, TOOL
import tool_formats
from harmony import HarmonySplitter, parse_harmony_call
family = ${JSON.stringify(f.parser)}
if family == "harmony":
    fmt = ("harmony", "", "", parse_harmony_call, False)
elif family == "llama3_json":
    fmt = ("llama3_json", "<|python_tag|>", "", tool_formats.parse_llama3_json, True)
elif family == "deepseek":
    fmt = ("deepseek", tool_formats.DEEPSEEK_CALLS_BEGIN, tool_formats.DEEPSEEK_CALLS_END, tool_formats.parse_deepseek, False)
else:
    mod = importlib.import_module("mlx_lm.tool_parsers." + family)
    fmt = (family, mod.tool_call_start, mod.tool_call_end, mod.parse_tool_call, False)
think = json.loads(${JSON.stringify(JSON.stringify(f.think ?? null))})
if family == "harmony":
    split = HarmonySplitter(True, True)
else:
    split = OutputSplitter(think[0] if think else None, think[1] if think else None, fmt[1], fmt[2], leading_json=fmt[4])
output = ${JSON.stringify(f.output)}
tools = json.loads(${JSON.stringify(JSON.stringify(f.tools ?? [weather]))})
out, call, text, marker = [], 0, "", ""
events = []
for i in range(0, len(output), 3):
    events += split.feed(output[i:i + 3])
events += split.finish()
for kind, frag in events:
    if kind == TEXT: out.append({"type": "text", "id": "g", "text": frag})
    elif kind == THINK: out.append({"type": "reasoning", "id": "g", "text": frag})
    elif kind == TOOL:
        text += frag
        out.append({"type": "tool_text", "id": "g", "call": call, "text": frag})
    elif kind == "tool_start":
        marker = frag
    else:
        out.append({"type": "tool_end", "id": "g", "call": call, "cut": False, "calls": parse_tool_block(fmt[3], text, tools), "raw": marker + text + frag})
        call, text = call + 1, ""
print(json.dumps({"replies": out}))
`;
  const proc = Bun.spawnSync([env.python, "-c", script], { stdout: "pipe", stderr: "pipe" });
  if (proc.exitCode !== 0) throw new Error(proc.stderr.toString());
  return (JSON.parse(proc.stdout.toString()) as { replies: WorkerReply[] }).replies;
}

function read(f: Family) {
  const replies = workerReplies(f);
  const events: GenerationEvent[] = [];
  const out = new MlxChatOutput((e) => events.push(e), { parser: f.parser }, { parallel: true, onExtraCall: () => undefined });
  replies.forEach(out.on);
  const calls: { name: string; arguments: string }[] = [];
  for (const e of events) {
    if (e.type === "tool_call_start") calls[e.index] = { name: e.name, arguments: "" };
    if (e.type === "tool_call_delta") calls[e.index]!.arguments += e.arguments;
  }
  const join = (t: GenerationEvent["type"]) => events.filter((e) => e.type === t).map((e) => ("text" in e ? e.text : "")).join("");
  return { calls: calls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) as unknown })), text: join("text"), reasoning: join("reasoning"), events };
}

describe("tool calls of each family, read while streamed", () => {
  test("Qwen 2.5/3, Hermes (json_tools): thinking, then two <tool_call> JSON calls whose arguments stream", () => {
    const r = read({
      parser: "json_tools", think: ["<think>", "</think>"],
      output: '<think>\nThe user wants the weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
    });
    expect(r.reasoning).toBe("\nThe user wants the weather.\n");
    expect(r.calls).toEqual([{ name: "get_weather", arguments: { city: "Paris", days: 2 } }, { name: "get_weather", arguments: { city: "Oslo" } }]);
    expect(r.text.trim()).toBe("");
    // Streamed, not whole: more than one argument fragment for the first call.
    expect(r.events.filter((e) => e.type === "tool_call_delta" && e.index === 0).length).toBeGreaterThan(3);
  });

  test("Mistral ([TOOL_CALLS], both the JSON list and the name[ARGS] forms; no end marker)", () => {
    expect(read({ parser: "mistral", output: '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}}]' }).calls)
      .toEqual([{ name: "get_weather", arguments: { city: "Rome" } }]);
    expect(read({ parser: "mistral", output: '[TOOL_CALLS]get_weather[ARGS]{"city": "Rome"}' }).calls)
      .toEqual([{ name: "get_weather", arguments: { city: "Rome" } }]);
  });

  test("GLM 4.5+ (<arg_key>/<arg_value> pairs)", () => {
    const r = read({ parser: "glm47", think: ["<think>", "</think>"], output: "<think>weather</think>Checking.<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Lima</arg_value>\n</tool_call>" });
    expect(r.reasoning).toBe("weather");
    expect(r.text).toBe("Checking.");
    expect(r.calls).toEqual([{ name: "get_weather", arguments: { city: "Lima" } }]);
  });

  test("Qwen3-Coder (<function=…><parameter=…>)", () => {
    const r = read({ parser: "qwen3_coder", output: "<tool_call>\n<function=get_weather>\n<parameter=city>\nCairo\n</parameter>\n</function>\n</tool_call>" });
    expect(r.calls).toEqual([{ name: "get_weather", arguments: { city: "Cairo" } }]);
  });

  test("LFM2 (pythonic calls between <|tool_call_start|> markers)", () => {
    const r = read({ parser: "pythonic", output: '<|tool_call_start|>[get_weather(city="Kyiv")]<|tool_call_end|>' });
    expect(r.calls).toEqual([{ name: "get_weather", arguments: { city: "Kyiv" } }]);
  });

  test("Llama 3.x (mlx-lm has no parser: LMX's own): a reply that is a JSON call, with or without <|python_tag|>; plain text stays text", () => {
    const r = read({ parser: "llama3_json", output: '  {"name": "get_weather", "parameters": {"city": "Lagos"}}' });
    expect(r.calls).toEqual([{ name: "get_weather", arguments: { city: "Lagos" } }]);
    expect(r.events.filter((e) => e.type === "tool_call_delta").length).toBeGreaterThan(2);
    expect(read({ parser: "llama3_json", output: '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Lima"}}' }).calls)
      .toEqual([{ name: "get_weather", arguments: { city: "Lima" } }]);
    const text = read({ parser: "llama3_json", output: 'It is sunny. Use {"city": x} next time.' });
    expect(text.calls).toEqual([]);
    expect(text.text).toBe('It is sunny. Use {"city": x} next time.');
  });

  test("DeepSeek V3 and V3.1 (mlx-lm has no parser: LMX's own), after an R1-style thought", () => {
    const v3 = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Quito\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    const r = read({ parser: "deepseek", think: ["<think>", "</think>"], output: "<think>ok</think>" + v3 });
    expect(r.reasoning).toBe("ok");
    expect(r.calls).toEqual([{ name: "get_weather", arguments: { city: "Quito" } }]);
    const v31 = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Baku\"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Riga\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
    expect(read({ parser: "deepseek", output: v31 }).calls).toEqual([{ name: "get_weather", arguments: { city: "Baku" } }, { name: "get_weather", arguments: { city: "Riga" } }]);
  });

  test("gpt-oss harmony (LMX's own): analysis is reasoning, final is the answer, commentary to=functions.NAME is a streamed call", () => {
    const call = read({
      parser: "harmony",
      output: '<|channel|>analysis<|message|>Need weather for Oslo.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo", "days": 3}',
    });
    expect(call.reasoning).toBe("Need weather for Oslo.");
    expect(call.text).toBe("");
    expect(call.calls).toEqual([{ name: "get_weather", arguments: { city: "Oslo", days: 3 } }]);
    expect(call.events.filter((e) => e.type === "tool_call_delta").length).toBeGreaterThan(2);
    const answer = read({ parser: "harmony", output: "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>It is 4." });
    expect(answer).toMatchObject({ reasoning: "Easy.", text: "It is 4.", calls: [] });
  });

  test("a block the family's parser cannot read is returned as the model's text, not an error", () => {
    const r = read({ parser: "json_tools", output: "Sure. <tool_call>get_weather Paris</tool_call>" });
    expect(r.calls).toEqual([]);
    expect(r.text).toBe("Sure. <tool_call>get_weather Paris</tool_call>");
  });
});

"""Tool-call formats of families mlx-lm has no parser for, so their calls are not left as text.

mlx-lm reads a model's tool calls with a parser it picks from the chat template (json_tools,
mistral, glm47, …). Three families people run have none there: Llama 3.x, whose calls are a bare
JSON object as the whole reply (or after <|python_tag|>); DeepSeek V3/R1, whose calls sit
between <｜tool▁calls▁begin｜> and <｜tool▁calls▁end｜>; and gpt-oss (harmony.py). The worker uses these when mlx-lm found
nothing. Each format is (name, start marker, end marker, parser, leading_json): leading_json means
a reply that starts with "{" is a call (there is no start marker to wait for).
"""

import json
import re

from harmony import is_harmony, parse_harmony_call

DEEPSEEK_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
DEEPSEEK_CALLS_END = "<｜tool▁calls▁end｜>"
# V3: function<｜tool▁sep｜>NAME\n```json\nARGS\n```   V3.1+: NAME<｜tool▁sep｜>ARGS
_DEEPSEEK_CALL = re.compile(
    r"<｜tool▁call▁begin｜>(?:function<｜tool▁sep｜>)?([^\n<｜]+?)\s*(?:<｜tool▁sep｜>|\n)\s*(?:```(?:json)?\s*)?(.*?)\s*(?:```)?\s*<｜tool▁call▁end｜>",
    re.DOTALL,
)


def parse_deepseek(text, _tools=None):
    calls = [{"name": name.strip(), "arguments": json.loads(args)} for name, args in _DEEPSEEK_CALL.findall(text)]
    if not calls:
        raise ValueError("no complete DeepSeek tool call")
    return calls


def _llama3_call(value):
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise ValueError("not a {name, parameters} object")
    args = value.get("parameters", value.get("arguments", {}))
    return {"name": value["name"], "arguments": args}


def parse_llama3_json(text, _tools=None):
    """One JSON call, a list of them, or several separated by ';' (Llama 3.2's form)."""
    text = text.strip()
    if text.startswith("<|python_tag|>"):
        text = text[len("<|python_tag|>"):].strip()
    try:
        value = json.loads(text)
    except ValueError:
        return [_llama3_call(json.loads(part)) for part in text.split(";") if part.strip()]
    return [_llama3_call(v) for v in value] if isinstance(value, list) else [_llama3_call(value)]


def fallback_format(tokenizer):
    """The format for a tokenizer mlx-lm found no tool parser for, or None."""
    vocab = tokenizer.get_vocab()
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    if is_harmony(vocab):
        # Its markers are message headers, not a start/end pair: harmony.HarmonySplitter reads them.
        return ("harmony", "", "", parse_harmony_call, False)
    if DEEPSEEK_CALLS_BEGIN in vocab or DEEPSEEK_CALLS_BEGIN in template:
        return ("deepseek", DEEPSEEK_CALLS_BEGIN, DEEPSEEK_CALLS_END, parse_deepseek, False)
    if "<|python_tag|>" in template or ('"parameters"' in template and "ipython" in template):
        return ("llama3_json", "<|python_tag|>", "", parse_llama3_json, True)
    return None

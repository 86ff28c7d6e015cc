"""Prompts: messages and text to token ids, with the model's chat template (bounded, templates.py)."""

import json

from templates import render_template_with_limits


class Prompts:
    def chat_tokens(self, messages, tools, template_kwargs=None):
        tok = self.tokenizer
        converted = []
        for m in messages:
            item = {"role": m["role"], "content": m["content"]}
            if m.get("reasoning"):
                # The names chat templates of thinking models read an earlier turn's thought from
                # (reasoning_content: Qwen3, DeepSeek, GLM; thinking: gpt-oss).
                item["reasoning_content"] = m["reasoning"]
                item["thinking"] = m["reasoning"]
            if m["role"] == "tool":
                item["tool_call_id"] = m["tool_call_id"]
            if m.get("tool_calls"):
                calls = []
                for c in m["tool_calls"]:
                    try:
                        args = json.loads(c["arguments"])
                    except ValueError:
                        args = c["arguments"]
                    calls.append({"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": args}})
                item["tool_calls"] = calls
            converted.append(item)
        if not tok.has_chat_template:
            # Models without a template get a plain transcript, as mlx-lm's own server does.
            text = "".join(f"{m['role'].upper()}: {m['content']}\n" for m in converted) + "ASSISTANT:"
            return list(tok.encode(text))
        kwargs = dict(template_kwargs or {})
        if tools:
            kwargs["tools"] = [{"type": "function", "function": {k: v for k, v in t.items() if v is not None}} for t in tools]
        return list(render_template_with_limits(lambda: tok.apply_chat_template(converted, add_generation_prompt=True, tokenize=True, **kwargs)))

    def text_tokens(self, text):
        tok = self.tokenizer
        bos = tok.bos_token
        # Like mlx-lm's stream_generate: add the BOS token unless the prompt already starts with it.
        return list(tok.encode(text, add_special_tokens=bos is None or not text.startswith(bos)))

    def ends_in_thinking(self, prompt):
        """Whether the rendered prompt opens a thought for the model (DeepSeek-R1, Qwen3 thinking templates)."""
        tok = self.tokenizer
        tail = tok.decode(prompt[-8:])
        return tail.rstrip().endswith(tok.think_start)

    def bos_ids(self):
        tok = self.tokenizer
        with_special = tok.encode("x", add_special_tokens=True)
        without = tok.encode("x", add_special_tokens=False)
        return list(with_special[: len(with_special) - len(without)]) if len(with_special) > len(without) and with_special[-len(without):] == without else []

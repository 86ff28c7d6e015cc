"""gpt-oss's harmony format, split like OutputSplitter splits marker-delimited output.

A harmony reply is a sequence of messages: a header (`<|channel|>analysis`, or
`<|channel|>commentary to=functions.NAME <|constrain|>json`, after `<|start|>assistant` for later
messages), `<|message|>`, a body, and a terminator (`<|end|>`, `<|call|>`, `<|return|>`). The
analysis channel is the model thinking; final (and commentary without a recipient, a preamble the
user may see) is the answer; commentary addressed to `functions.NAME` is a tool call whose body is
its JSON arguments. mlx-lm has no reader for it, so this is LMX's.

Tool calls come out as `{"name": NAME, "arguments": BODY}`, the shape the JSON call streamer reads,
so their arguments stream like any JSON call's.
"""

import json
import re

from textfilter import TEXT, THINK, TOOL

START, MESSAGE = "<|start|>", "<|message|>"
TERMINATORS = ("<|end|>", "<|call|>", "<|return|>")
# A header longer than this without <|message|> is not a header: the model is writing plain text.
MAX_HEADER = 512
HEADER, BODY, BETWEEN = "header", "body", "between"

_CHANNEL = re.compile(r"<\|channel\|>\s*(\w+)")
_RECIPIENT = re.compile(r"to=([^\s<]+)")


def is_harmony(vocab):
    return all(t in vocab for t in ("<|channel|>", "<|message|>", "<|call|>", "<|start|>"))


def parse_harmony_call(text, _tools=None):
    value = json.loads(text)
    return {"name": value["name"], "arguments": value["arguments"]}


def _holdback(text, needles):
    best = 0
    for needle in needles:
        for k in range(min(len(needle) - 1, len(text)), 0, -1):
            if text.endswith(needle[:k]):
                best = max(best, k)
                break
    return best


class HarmonySplitter:
    def __init__(self, split_reasoning=True, parse_tools=True):
        self.split_reasoning = split_reasoning
        self.parse_tools = parse_tools
        self.phase = HEADER
        self.route = TEXT  # where the current body goes
        self.header = ""
        self.buf = ""

    @property
    def state(self):
        """THINK while the model writes analysis (counted as reasoning tokens), as OutputSplitter's."""
        return self.route if self.phase == BODY else TEXT

    def _open(self, header):
        channel = _CHANNEL.search(header)
        recipient = _RECIPIENT.search(header)
        name = channel.group(1) if channel else "final"
        events = []
        if recipient and recipient.group(1).startswith("functions.") and self.parse_tools:
            self.route = TOOL
            fn = recipient.group(1)[len("functions."):]
            events.append(("tool_start", header + MESSAGE))
            events.append((TOOL, '{"name": ' + json.dumps(fn) + ', "arguments": '))
        elif name == "analysis":
            self.route = THINK if self.split_reasoning else TEXT
        else:
            self.route = TEXT
        return events

    def _close(self, terminator):
        if self.route == TOOL:
            return [(TOOL, "}"), ("tool_end", terminator)]
        return []

    def feed(self, text):
        self.buf += text
        events = []
        while True:
            if self.phase == HEADER:
                i = self.buf.find(MESSAGE)
                if i == -1:
                    if len(self.buf) > MAX_HEADER:
                        self.phase, self.route = BODY, TEXT
                        continue
                    return events
                events += self._open(self.buf[:i])
                self.buf = self.buf[i + len(MESSAGE):]
                self.phase = BODY
                continue
            if self.phase == BETWEEN:
                i = self.buf.find(START)
                if i == -1:
                    keep = _holdback(self.buf, (START,))
                    self.buf = self.buf[len(self.buf) - keep:] if keep else ""
                    return events
                self.buf = self.buf[i + len(START):]
                self.phase = HEADER
                continue
            hits = [(self.buf.find(t), t) for t in TERMINATORS]
            hits = [h for h in hits if h[0] != -1]
            if hits:
                i, term = min(hits)
                if i > 0:
                    events.append((self.route, self.buf[:i]))
                events += self._close(term)
                self.buf = self.buf[i + len(term):]
                self.phase = BETWEEN
                continue
            keep = _holdback(self.buf, TERMINATORS)
            if len(self.buf) > keep:
                events.append((self.route, self.buf[: len(self.buf) - keep]))
                self.buf = self.buf[len(self.buf) - keep:]
            return events

    def finish(self):
        events = []
        if self.phase == HEADER and self.buf:
            events.append((TEXT, self.buf))
        elif self.phase == BODY:
            if self.buf:
                events.append((self.route, self.buf))
            # Generation stopped on <|call|> or <|return|> (end-of-sequence tokens, not text) or was cut.
            events += self._close("")
        self.buf = ""
        self.phase = BETWEEN
        return events

    def abandon(self):
        self.buf = ""

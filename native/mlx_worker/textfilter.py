"""The model's output split into answer, thinking and tool calls, by its own markers.

Markers (mlx-lm's tokenizer wrapper names them: think_start/think_end, tool_call_start/end) are
matched on decoded text across token boundaries; text that could still turn into a marker is held
back. Stop strings are not matched here: LMX matches them on the text it receives, for every
engine, and ends the generation with an `end` message.
"""

import json

TEXT, THINK, TOOL = "text", "reasoning", "tool"


def parse_tool_block(parser, raw, tools, log=lambda _msg: None):
    """The call(s) in one tool-call block, read by the model family's parser (mlx-lm's), as
    [{name, arguments (JSON text)}]; None when it cannot be read."""
    try:
        parsed = parser(raw, tools)
    except Exception as e:  # each family's parser raises its own errors on text it cannot read
        log(f"cannot parse a tool call ({e}): {raw[:200]!r}")
        return None
    out = []
    for c in parsed if isinstance(parsed, list) else [parsed]:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            return None
        args = c.get("arguments", {})
        out.append({"name": c["name"], "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)})
    return out


class OutputSplitter:
    def __init__(self, think_start=None, think_end=None, tool_start=None, tool_end=None, in_think=False, leading_json=False):
        self.think = (think_start, think_end) if think_start and think_end else None
        self.tool = (tool_start, tool_end or "") if tool_start else None
        self.state = THINK if in_think and self.think else TEXT
        self.buf = ""
        # Llama 3's calls have no start marker: an answer that begins with "{" is one. Undecided
        # until the answer's first visible character.
        self.leading = leading_json and self.tool is not None

    def _markers(self):
        """The markers that can end the current state, each with the state it leads to."""
        if self.state == TEXT:
            out = []
            if self.think:
                out.append((self.think[0], THINK))
            if self.tool:
                out.append((self.tool[0], TOOL))
            return out
        if self.state == THINK:
            return [(self.think[1], TEXT)]
        # A tool call without an end marker (Mistral's [TOOL_CALLS]) runs to the end of generation.
        return [(self.tool[1], TEXT)] if self.tool[1] else []

    @staticmethod
    def _holdback(text, needle):
        """Length of the longest suffix of `text` that is a proper prefix of `needle`."""
        for k in range(min(len(needle) - 1, len(text)), 0, -1):
            if text.endswith(needle[:k]):
                return k
        return 0

    def feed(self, text):
        """Events for `text`: (TEXT | THINK | TOOL, fragment), ("tool_start", marker) when a call
        opens and ("tool_end", marker) when it closes (markers as written; "" where there is none)."""
        self.buf += text
        events = []
        while True:
            if self.leading and self.state == TEXT:
                head = self.buf.lstrip()
                if not head:
                    return events
                self.leading = False
                if head.startswith("{"):
                    self.buf, self.state = head, TOOL
                    events.append(("tool_start", ""))
                    continue
            markers = self._markers()
            hits = [(self.buf.find(m), m, nxt) for m, nxt in markers if m]
            hits = [h for h in hits if h[0] != -1]
            if hits:
                i, marker, nxt = min(hits, key=lambda h: h[0])
                if i > 0:
                    events.append((self.state, self.buf[:i]))
                if self.state == TOOL:
                    events.append(("tool_end", marker))
                elif nxt == TOOL:
                    events.append(("tool_start", marker))
                self.buf = self.buf[i + len(marker):]
                self.state = nxt
                continue
            keep = max([self._holdback(self.buf, m) for m, _ in markers if m] or [0])
            if len(self.buf) > keep:
                events.append((self.state, self.buf[: len(self.buf) - keep]))
                self.buf = self.buf[len(self.buf) - keep:]
            return events

    def finish(self):
        """Events for what is still held back once generation ended; an open call is closed."""
        events = []
        if self.buf:
            events.append((self.state, self.buf))
            self.buf = ""
        if self.state == TOOL:
            events.append(("tool_end", ""))
            self.state = TEXT
        return events

    def abandon(self):
        """Generation was ended from outside: held text is dropped."""
        self.buf = ""

"""Tool-call markers, matched on decoded text across token boundaries."""

# ---------------------------------------------------------------------------------------------
# Text handling: the model's tool-call markers are matched on decoded text, across token
# boundaries; text that could still turn into a marker is held back. Stop strings are not matched
# here: LMX matches them on the text it receives, for every engine, and ends the generation with
# an `end` message.


class TextFilter:
    def __init__(self, tool_start, tool_end):
        self.tool_start = tool_start
        self.tool_end = tool_end
        self.buf = ""
        self.in_tool = False
        self.tool_text = ""
        self.tool_calls = []

    def _holdback(self, text, needle):
        """Length of the longest suffix of `text` that is a proper prefix of `needle`."""
        for k in range(min(len(needle) - 1, len(text)), 0, -1):
            if text.endswith(needle[:k]):
                return k
        return 0

    def feed(self, text):
        """Returns the content to emit now."""
        self.buf += text
        if not self.tool_start:
            rest, self.buf = self.buf, ""
            return rest
        out = []
        while True:
            if self.in_tool:
                if self.tool_end:
                    j = self.buf.find(self.tool_end)
                    if j == -1:
                        keep = self._holdback(self.buf, self.tool_end)
                        self.tool_text += self.buf[: len(self.buf) - keep]
                        self.buf = self.buf[len(self.buf) - keep:]
                        return "".join(out)
                    self.tool_calls.append(self.tool_text + self.buf[:j])
                    self.tool_text = ""
                    self.buf = self.buf[j + len(self.tool_end):]
                    self.in_tool = False
                    continue
                self.tool_text += self.buf
                self.buf = ""
                return "".join(out)
            i = self.buf.find(self.tool_start)
            if i != -1:
                out.append(self.buf[:i])
                self.buf = self.buf[i + len(self.tool_start):]
                self.in_tool = True
                continue
            keep = self._holdback(self.buf, self.tool_start)
            out.append(self.buf[: len(self.buf) - keep])
            self.buf = self.buf[len(self.buf) - keep:]
            return "".join(out)

    def finish(self):
        """Text still held back once generation ended."""
        if self.in_tool:
            self.tool_text += self.buf
            self.buf = ""
            if not self.tool_end:
                self.tool_calls.append(self.tool_text)
                self.tool_text = ""
            return ""
        rest, self.buf = self.buf, ""
        return rest

    def abandon(self):
        """Generation was ended from outside: held text and a tool call still being written are dropped."""
        self.buf = ""
        self.in_tool = False
        self.tool_text = ""

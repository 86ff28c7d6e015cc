"""Stop strings and tool-call markers, matched on decoded text across token boundaries."""

# ---------------------------------------------------------------------------------------------
# Text handling: stop strings and tool-call markers are matched on decoded text, across token
# boundaries. Text that could still turn into a stop string or a marker is held back.


class TextFilter:
    def __init__(self, stops, tool_start, tool_end):
        self.stops = stops
        self.tool_start = tool_start
        self.tool_end = tool_end
        self.buf = ""
        self.in_tool = False
        self.tool_text = ""
        self.tool_calls = []

    def _holdback(self, text, needles):
        """Length of the longest suffix of `text` that is a proper prefix of a needle."""
        best = 0
        for n in needles:
            for k in range(min(len(n) - 1, len(text)), best, -1):
                if text.endswith(n[:k]):
                    best = k
                    break
        return best

    def feed(self, text):
        """Returns (content to emit, whether a stop string was hit)."""
        self.buf += text
        out = []
        while True:
            if self.in_tool:
                if self.tool_end:
                    j = self.buf.find(self.tool_end)
                    if j == -1:
                        keep = self._holdback(self.buf, [self.tool_end])
                        self.tool_text += self.buf[: len(self.buf) - keep]
                        self.buf = self.buf[len(self.buf) - keep:]
                        return "".join(out), False
                    self.tool_calls.append(self.tool_text + self.buf[:j])
                    self.tool_text = ""
                    self.buf = self.buf[j + len(self.tool_end):]
                    self.in_tool = False
                    continue
                self.tool_text += self.buf
                self.buf = ""
                return "".join(out), False
            hits = [(self.buf.find(s), 0, s) for s in self.stops]
            if self.tool_start:
                hits.append((self.buf.find(self.tool_start), 1, self.tool_start))
            hits = [h for h in hits if h[0] != -1]
            if hits:
                i, is_tool, needle = min(hits)
                out.append(self.buf[:i])
                if not is_tool:
                    self.buf = ""
                    return "".join(out), True
                self.buf = self.buf[i + len(needle):]
                self.in_tool = True
                continue
            needles = self.stops + ([self.tool_start] if self.tool_start else [])
            keep = self._holdback(self.buf, needles)
            out.append(self.buf[: len(self.buf) - keep])
            self.buf = self.buf[len(self.buf) - keep:]
            return "".join(out), False

    def finish(self):
        """Text still held back once generation ended without a stop string."""
        if self.in_tool:
            self.tool_text += self.buf
            self.buf = ""
            if not self.tool_end:
                self.tool_calls.append(self.tool_text)
                self.tool_text = ""
            return ""
        rest, self.buf = self.buf, ""
        return rest


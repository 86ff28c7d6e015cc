// A custom tool is offered to the model as a function of one string argument, so its call's
// arguments arrive as JSON fragments of `{"input": "…"}`. This decodes the string as it arrives,
// so `response.custom_tool_call_input.delta` carries the free text itself, piece by piece, as
// OpenAI streams it. Arguments of another shape are not streamed (the caller sends the input
// whole when the call ends).

const OPENING = /^\s*\{\s*"input"\s*:\s*"/;
/** Longest text that can still be a prefix of OPENING with generous whitespace. */
const OPENING_LIMIT = 64;
const ESCAPES: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

export class CustomInputStream {
  private text = "";
  private pos = 0;
  private state: "opening" | "value" | "closed" | "broken" = "opening";
  /** A high surrogate waits for its pair, so no delta ends in half a character. */
  private held = "";
  /** Decoded text handed out so far. */
  streamed = "";

  /** The decoded text this fragment completes ("" when none). */
  feed(fragment: string): string {
    if (this.state === "closed" || this.state === "broken") return "";
    this.text += fragment;
    if (this.state === "opening") {
      const m = OPENING.exec(this.text);
      if (!m) {
        if (this.text.length > OPENING_LIMIT || /[^\s{"inptu:]/.test(this.text)) this.state = "broken";
        return "";
      }
      this.state = "value";
      this.pos = m[0].length;
    }
    let out = this.held;
    this.held = "";
    while (this.pos < this.text.length) {
      const ch = this.text[this.pos]!;
      if (ch === '"') {
        this.state = "closed";
        break;
      }
      if (ch !== "\\") {
        out += ch;
        this.pos++;
        continue;
      }
      const next = this.text[this.pos + 1];
      if (next === undefined) break;
      if (next === "u") {
        const hex = this.text.slice(this.pos + 2, this.pos + 6);
        if (hex.length < 4) break;
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
          this.state = "broken";
          return "";
        }
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 6;
      } else if (next in ESCAPES) {
        out += ESCAPES[next];
        this.pos += 2;
      } else {
        this.state = "broken";
        return "";
      }
    }
    if (this.state !== "closed" && /[\uD800-\uDBFF]$/.test(out)) {
      this.held = out.slice(-1);
      out = out.slice(0, -1);
    }
    this.streamed += out;
    return out;
  }
}

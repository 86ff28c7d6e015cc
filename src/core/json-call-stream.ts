// Streams a tool call written as JSON ({"name": …, "arguments": {…}}, the Hermes/Qwen and Llama 3
// shape) while the model writes it: the call starts once its name is complete, and its arguments
// go out in fragments exactly as generated, so the fragments concatenate to the arguments' JSON.
// Engines whose model writes raw tool syntax (MLX) feed it the text of one call block.

export interface CallSink {
  start(name: string): void;
  args(fragment: string): void;
}

const ARGUMENT_KEYS = new Set(["arguments", "parameters"]);

export class JsonCallStream {
  private text = "";
  private pos = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private stringStart = -1;
  private key: string | undefined;
  /** After ':' at the top level: the next value belongs to `key`. */
  private awaitingValue = false;
  private expectingKey = false;
  private name: string | undefined;
  /** Where the arguments value starts in `text`; how much of it went out; whether it ended. */
  private argsStart = -1;
  private argsSent = 0;
  private argsEnd = -1;
  private argsIsString = false;
  private broken = false;
  started = false;

  constructor(private readonly sink: CallSink) {}

  /** False once the text cannot be this shape (the caller falls back to the model parser's reading). */
  get ok(): boolean {
    return !this.broken;
  }

  feed(fragment: string): void {
    if (this.broken) return;
    this.text += fragment;
    for (; this.pos < this.text.length && !this.broken; this.pos++) this.step(this.text[this.pos]!, this.pos);
    this.flush();
  }

  private step(ch: string, i: number): void {
    if (this.inString) {
      if (this.escaped) this.escaped = false;
      else if (ch === "\\") this.escaped = true;
      else if (ch === '"') {
        this.inString = false;
        if (this.depth === 1) this.endTopLevelString(i);
      }
      return;
    }
    if (this.depth === 0) {
      if (ch === "{") { this.depth = 1; this.expectingKey = true; }
      else if (!/\s/.test(ch)) this.broken = true;
      return;
    }
    if (this.depth === 1 && this.awaitingValue && !/\s/.test(ch)) {
      this.awaitingValue = false;
      if (this.key !== undefined && ARGUMENT_KEYS.has(this.key) && this.argsStart === -1) {
        this.argsStart = i;
        this.argsIsString = ch === '"';
      }
    }
    switch (ch) {
      case '"':
        this.inString = true;
        this.stringStart = i;
        break;
      case "{":
      case "[":
        this.depth++;
        break;
      case "}":
      case "]":
        this.depth--;
        if (this.depth === 1 && this.argsStart !== -1 && this.argsEnd === -1 && !this.argsIsString) this.argsEnd = i + 1;
        if (this.depth === 0) this.closeValue(i);
        break;
      case ":":
        if (this.depth === 1) this.awaitingValue = true;
        break;
      case ",":
        if (this.depth === 1) { this.closeValue(i); this.expectingKey = true; }
        break;
    }
  }

  private endTopLevelString(i: number): void {
    const raw = this.text.slice(this.stringStart, i + 1);
    if (this.expectingKey) {
      this.key = parseString(raw);
      this.expectingKey = false;
      return;
    }
    if (this.key === "name" && this.name === undefined) this.name = parseString(raw);
    else if (this.argsStart === this.stringStart && this.argsIsString) this.argsEnd = i + 1;
  }

  /** A primitive arguments value (rare: null) ends at the next ',' or '}'. */
  private closeValue(i: number): void {
    if (this.argsStart !== -1 && this.argsEnd === -1) this.argsEnd = i;
  }

  private flush(): void {
    if (this.name === undefined) return;
    if (!this.started) {
      this.started = true;
      this.sink.start(this.name);
    }
    if (this.argsStart === -1) return;
    if (this.argsIsString) {
      // Arguments written as a JSON string holding JSON: sent decoded, once complete.
      if (this.argsEnd !== -1 && this.argsSent === 0) {
        const decoded = parseString(this.text.slice(this.argsStart, this.argsEnd));
        if (decoded !== undefined) this.sink.args(decoded);
        this.argsSent = 1;
      }
      return;
    }
    const upTo = this.argsEnd !== -1 ? this.argsEnd : this.text.length;
    const from = this.argsStart + this.argsSent;
    if (upTo > from) {
      const piece = this.text.slice(from, upTo).trimEnd();
      // Trailing whitespace waits: it may turn out to be between the value and the closing brace.
      if (piece) {
        this.sink.args(piece);
        this.argsSent += piece.length;
      }
    }
  }

  /** Whether the whole call was read (its name and a complete arguments value, or none). */
  get complete(): boolean {
    return !this.broken && this.depth === 0 && this.name !== undefined && (this.argsStart === -1 || this.argsEnd !== -1);
  }

  get hasArguments(): boolean {
    return this.argsStart !== -1;
  }
}

function parseString(raw: string): string | undefined {
  try {
    return JSON.parse(raw) as string;
  } catch {
    return undefined;
  }
}

// Turns the output of git and of node-llama-cpp's source build (cmake configure, then Ninja's
// "[12/512] Building …" or Make's "[ 42%] Building …" lines) into phases and percentages, and keeps
// the compiler's error lines so a failed build can say why without sending anyone to the log first.

export type BuildPhase = "prepare" | "fetch" | "configure" | "compile" | "verify" | "register";

export interface PhaseProgress {
  phase: BuildPhase;
  /** 0–100 within the phase, when the output says. */
  percent: number | null;
}

const MAX_ERROR_LINES = 12;
const MAX_LINE = 2000;

export class BuildOutputParser {
  private phase: BuildPhase;
  private percent: number | null = null;
  private partial = "";
  private readonly errors: string[] = [];
  private readonly tail: string[] = [];

  constructor(phase: BuildPhase, private readonly onProgress: (p: PhaseProgress) => void = () => undefined) {
    this.phase = phase;
  }

  /** Feeds raw output; lines may arrive split across chunks and end in \r (git's progress). */
  feed(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split(/\r\n|\r|\n/);
    this.partial = (lines.pop() ?? "").slice(-MAX_LINE);
    for (const line of lines) this.line(line.slice(0, MAX_LINE));
  }

  /** Processes a last line that had no newline. */
  end(): void {
    if (this.partial !== "") this.line(this.partial);
    this.partial = "";
  }

  current(): PhaseProgress {
    return { phase: this.phase, percent: this.percent };
  }

  /** The compiler's error lines (with their file:line), or the last lines when none matched. */
  failureSummary(): string {
    return (this.errors.length > 0 ? this.errors : this.tail).join("\n");
  }

  private line(raw: string): void {
    // eslint-disable-next-line no-control-regex
    const line = raw.replace(/\u001b\[[0-9;]*[A-Za-z]/g, "").trimEnd();
    if (line.trim() === "") return;
    this.tail.push(line);
    if (this.tail.length > MAX_ERROR_LINES) this.tail.shift();
    if (isErrorLine(line) && this.errors.length < MAX_ERROR_LINES) this.errors.push(line.trim());

    const fetch = /^(?:remote: )?(?:Receiving objects|Resolving deltas):\s+(\d{1,3})%/.exec(line);
    if (fetch !== null && this.phase === "fetch") {
      this.set("fetch", Number(fetch[1]));
      return;
    }
    const ninja = /^\[(\d+)\/(\d+)\]\s/.exec(line);
    if (ninja !== null) {
      const total = Number(ninja[2]);
      if (total > 0) this.set("compile", Math.min(100, Math.floor((Number(ninja[1]) * 100) / total)));
      return;
    }
    const make = /^\[\s*(\d{1,3})%\]\s/.exec(line);
    if (make !== null) {
      this.set("compile", Math.min(100, Number(make[1])));
      return;
    }
    if (this.phase !== "compile" && /^-- |^CMAKE_BUILD_TYPE=|Compiling llama\.cpp/.test(line)) this.set("configure", null);
  }

  private set(phase: BuildPhase, percent: number | null): void {
    if (phase === this.phase && percent === this.percent) return;
    this.phase = phase;
    this.percent = percent;
    this.onProgress({ phase, percent });
  }
}

/** gcc/clang/MSVC diagnostics and CMake's own errors; warnings are not failures. */
export function isErrorLine(line: string): boolean {
  return /(?:^|\s|:)(?:fatal )?error(?: [A-Z]+\d+)?:\s/i.test(line) || /^CMake Error\b/.test(line) || /^FAILED: /.test(line);
}

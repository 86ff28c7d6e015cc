// The one logger. Writes to stderr so stdout stays free for command output (--json).
export type LogLevel = "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

type Fields = Record<string, unknown>;

let minLevel: number = ORDER.info;
let json = false;

export function configureLog(opts: { level?: string; format?: string }): void {
  if (opts.level !== undefined) {
    if (!(opts.level in ORDER)) throw new Error(`log level must be one of ${Object.keys(ORDER).join(", ")}`);
    minLevel = ORDER[opts.level as LogLevel];
  }
  if (opts.format !== undefined) {
    if (opts.format !== "text" && opts.format !== "json") throw new Error("log format must be text or json");
    json = opts.format === "json";
  }
}

function write(level: LogLevel, msg: string, fields?: Fields): void {
  if (ORDER[level] < minLevel) return;
  const time = new Date().toISOString();
  if (json) {
    process.stderr.write(JSON.stringify({ time, level, msg, ...fields }) + "\n");
    return;
  }
  let line = `${time} ${level.toUpperCase().padEnd(5)} ${msg}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      const text = typeof v === "string" ? (/\s|"/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v);
      line += ` ${k}=${text}`;
    }
  }
  process.stderr.write(line + "\n");
}

export const log = {
  debug: (msg: string, fields?: Fields) => write("debug", msg, fields),
  info: (msg: string, fields?: Fields) => write("info", msg, fields),
  warn: (msg: string, fields?: Fields) => write("warn", msg, fields),
  error: (msg: string, fields?: Fields) => write("error", msg, fields),
};

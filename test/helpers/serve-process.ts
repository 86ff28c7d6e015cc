import { Database } from "bun:sqlite";
import { join } from "node:path";

const MAIN = join(import.meta.dir, "..", "..", "src", "cli", "main.ts");

export interface ServeProcess {
  proc: Bun.Subprocess<"ignore", "ignore", "pipe">;
  url: string;
  /** Everything the server logged so far. */
  log(): string;
  request(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  /** Sends `signal` and resolves with the exit code and how long the exit took. */
  signal(signal: NodeJS.Signals): { exited: Promise<{ code: number; ms: number }> };
}

/** `lmx serve` as a real child process on a free port (for signals and crashes), LMX_HOME = `home`. */
export async function serveProcess(home: string, args: string[], env: Record<string, string> = {}): Promise<ServeProcess> {
  const proc = Bun.spawn([process.execPath, MAIN, "serve", "--port", "0", "--threads", "1", "--log-format", "json", ...args], {
    env: { ...process.env, LMX_HOME: home, ...env }, stdin: "ignore", stdout: "ignore", stderr: "pipe",
  });
  const reader = proc.stderr.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let url: string | undefined;
  while (!url) {
    const { value, done } = await reader.read();
    if (done) throw new Error("server exited before listening: " + text);
    text += decoder.decode(value, { stream: true });
    url = text.match(/"url":"(http:[^"]+)"/)?.[1];
  }
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      text += decoder.decode(value, { stream: true });
    }
  })();
  return {
    proc,
    url,
    log: () => text,
    request: (path, init = {}) => {
      const { json, ...rest } = init;
      return fetch(url + path, { ...rest, headers: json !== undefined ? { "content-type": "application/json" } : rest.headers, body: json !== undefined ? JSON.stringify(json) : rest.body });
    },
    signal(signal) {
      const started = Date.now();
      proc.kill(signal);
      return { exited: proc.exited.then((code) => ({ code, ms: Date.now() - started })) };
    },
  };
}

/** SQLite's own consistency check of LMX's database, after the server is gone. */
export function integrityCheck(home: string): string {
  const db = new Database(join(home, "lmx.db"), { readonly: true });
  try {
    return (db.query("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check;
  } finally {
    db.close();
  }
}

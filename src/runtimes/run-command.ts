// Runs the installer's commands (uv, the new environment's Python) with their stderr shown as
// progress and kept for the error message.

import { RuntimeInstallError } from "../errors.ts";

/** Runs a command, streaming its stderr lines to `onLine`; resolves with stdout, rejects with the tail of stderr. */
export async function run(argv: string[], env: Record<string, string | undefined>, onLine?: (line: string) => void, timeoutMs?: number): Promise<string> {
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env });
  const timer = timeoutMs ? setTimeout(() => proc.kill("SIGKILL"), timeoutMs) : undefined;
  const tail: string[] = [];
  const readErr = (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stderr) {
      buf += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.search(/[\r\n]/)) !== -1) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        onLine?.(line);
      }
    }
    if (buf.trim()) { tail.push(buf.trim()); onLine?.(buf.trim()); }
  })();
  const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited, readErr]);
  if (timer) clearTimeout(timer);
  if (code !== 0) {
    const why = proc.signalCode ? `was killed (${proc.signalCode}${timeoutMs ? `, time limit ${Math.round(timeoutMs / 1000)} s` : ""})` : `exited with ${code}`;
    throw new RuntimeInstallError(`${argv.slice(0, 3).join(" ")} ${why}: ${tail.slice(-8).join(" | ") || "(no output)"}`);
  }
  return stdout;
}

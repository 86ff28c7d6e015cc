import { clientCommand } from "../client-command.ts";
import { bytes, duration } from "../table.ts";

interface Job { id: string; state: string; error: string | null; model_id: string | null; bytes_done: number; bytes_total: number; note: string | null; model: string }
interface Progress { id: string; file: string; bytesDone: number; bytesTotal: number; rate: number; etaSeconds: number | null; retrying?: string | null }

function bar(done: number, total: number, width = 30): string {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const full = Math.round(frac * width);
  return `[${"#".repeat(full)}${"-".repeat(width - full)}] ${(frac * 100).toFixed(0).padStart(3)}%`;
}

export const pull = clientCommand({
  summary: "Download a model from Hugging Face (org/repo[:QUANT|:file.gguf])",
  usage: "pull <org/repo>[:<quant>|:<file.gguf>] [--revision REV] [--json]",
  description: "Downloads into the Hugging Face cache through the running server, resuming partial files and verifying checksums. GGUF repos: the quant given (default Q4_K_M, with a fallback that is reported). MLX repos: the whole snapshot. Ctrl-C cancels (the partial file is kept for the next pull).",
  minArgs: 1,
  settings: [{ key: "revision", kind: "string", flagOnly: true, placeholder: "REV", description: "Branch, tag or commit (default main)." }],
  async run({ client, flags, args, json, print }) {
    const events = new AbortController();
    const stream = client.events("/admin/v1/events", events.signal);
    const job = await client.post<Job>("/admin/v1/downloads", { model: args[0], revision: flags.revision });
    const tty = process.stderr.isTTY === true && !json;
    let shownWidth = 0;
    let lastPrinted = 0;
    let interrupted = false;
    const onInt = () => {
      interrupted = true;
      void client.call("DELETE", `/admin/v1/downloads/${job.id}`).catch(() => undefined).finally(() => events.abort());
    };
    process.once("SIGINT", onInt);
    // Events drive the display; a poll catches a job that finished before the stream was attached.
    const poll = setInterval(() => {
      void client.get<Job>(`/admin/v1/downloads/${job.id}`).then((j) => { if (["done", "failed", "cancelled"].includes(j.state)) events.abort(); }, () => undefined);
    }, 2000);
    try {
      for await (const e of stream) {
        const data = e.data as { id?: string };
        if (data.id !== job.id) continue;
        if (e.event === "download.progress" && !json) {
          const p = e.data as Progress;
          const state = p.retrying ? p.retrying : `${bytes(p.rate)}/s  ETA ${duration(p.etaSeconds)}`;
          const line = `${p.file || job.model}  ${bar(p.bytesDone, p.bytesTotal)}  ${bytes(p.bytesDone)}/${bytes(p.bytesTotal)}  ${state}`;
          if (p.retrying && !tty) {
            // A stall is news: logs get it at once, not at the next five-second line.
            process.stderr.write(line + "\n");
            lastPrinted = Date.now();
          } else if (tty) {
            process.stderr.write(`\r${line.padEnd(shownWidth)}`);
            shownWidth = line.length;
          } else if (Date.now() - lastPrinted > 5000) {
            // Logs and CI get a line every few seconds rather than a carriage-return bar.
            process.stderr.write(line + "\n");
            lastPrinted = Date.now();
          }
        }
        if (["download.done", "download.failed", "download.cancelled"].includes(e.event)) break;
      }
    } finally {
      clearInterval(poll);
      events.abort();
      process.off("SIGINT", onInt);
      if (shownWidth) process.stderr.write("\n");
    }
    const final = await client.get<Job>(`/admin/v1/downloads/${job.id}`);
    if (final.state === "done") {
      print(final, () => `${final.note ? final.note + "\n" : ""}pulled ${final.model} → model '${final.model_id}' (${bytes(final.bytes_total)}). Use it as "model": "${final.model_id}".`);
      return 0;
    }
    print(final, () => `pull ${final.state}${final.error ? `: ${final.error}` : interrupted ? " (partial file kept; pull again to resume)" : ""}`);
    return interrupted ? 130 : 1;
  },
});

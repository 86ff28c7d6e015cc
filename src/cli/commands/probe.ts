import { UsageError } from "../../errors.ts";
import { clientCommand } from "../client-command.ts";
import { encodeId, type LmxClient } from "../client.ts";
import { bytes, duration } from "../table.ts";

interface Step { context_length: number; loads: boolean; works: boolean; decided_by: string | null; detail: string; ms: number }
interface Job {
  id: string; model: string; state: string; error: string | null; steps: Step[];
  result: { tested_context_length: number; tested_reason: string; tested_memory_bytes: number | null; decided_by: string | null; duration_ms: number; tested_engine: string } | null;
}

async function probeOne(client: LmxClient, model: string, body: object, json: boolean): Promise<Job> {
  const events = new AbortController();
  const stream = client.events("/admin/v1/events", events.signal);
  const job = await client.post<Job>(`/admin/v1/models/${encodeId(model)}/probe`, body);
  if (!json) process.stderr.write(`probing ${model} (job ${job.id})\n`);
  const poll = setInterval(() => {
    void client.get<Job>(`/admin/v1/probes/${job.id}`).then((j) => { if (j.state !== "running") events.abort(); }, () => undefined);
  }, 2000);
  try {
    for await (const e of stream) {
      const d = e.data as { id?: string } & Partial<{ contextLength: number; loads: boolean; works: boolean; decidedBy: string; detail: string; ms: number }>;
      if (d.id !== job.id) continue;
      if (e.event === "probe.step" && !json) {
        const verdict = !d.loads ? "does not load" : d.works ? "works" : "fails";
        process.stderr.write(`  ${String(d.contextLength).padStart(8)} tokens  ${verdict.padEnd(13)} ${duration((d.ms ?? 0) / 1000).padStart(6)}  ${d.detail}\n`);
      }
      if (e.event === "probe.done" || e.event === "probe.failed") break;
    }
  } finally {
    clearInterval(poll);
    events.abort();
  }
  return client.get<Job>(`/admin/v1/probes/${job.id}`);
}

export const probe = clientCommand({
  summary: "Measure the context length a model really handles",
  usage: "probe <model> | --all [--max N] [--min N] [--budget-minutes M] [--json]",
  description: "Loads the model at several context lengths within the memory budget and checks that it still uses information at the far end (copy check; needle check for chat models). The result is stored and used as the model's default context.",
  settings: [
    { key: "all", kind: "bool", default: false, flagOnly: true, description: "Probe every model without a fresh result, one after another." },
    { key: "max", kind: "int", min: 1, flagOnly: true, placeholder: "N", description: "Largest context to try (default: the declared context)." },
    { key: "min", kind: "int", min: 1, flagOnly: true, placeholder: "N", description: "Smallest context, checked first (default 128)." },
    { key: "budgetMinutes", kind: "int", min: 1, flagOnly: true, placeholder: "M", description: "Time budget per model (default 30)." },
  ],
  async run({ client, flags, args, json, print }) {
    const body = { max: flags.max, min: flags.min, budget_minutes: flags.budgetMinutes };
    let models = args;
    if (flags.all) {
      const { data } = await client.get<{ data: { id: string; tested_context_length: number | null; tested_stale: boolean | null; embedding_model?: boolean }[] }>("/admin/v1/models");
      models = data.filter((m) => m.tested_context_length === null || m.tested_stale).map((m) => m.id);
      if (models.length === 0 && !json) console.error("every model has a fresh probe result");
    } else if (models.length !== 1) {
      throw new UsageError("usage: lmx probe <model> | --all");
    }
    const jobs: Job[] = [];
    for (const m of models) jobs.push(await probeOne(client, m, body, json));
    print(jobs, () => jobs.map((j) => j.result
      ? `${j.model}: tested context ${j.result.tested_context_length}${j.result.tested_memory_bytes ? ` (${bytes(j.result.tested_memory_bytes)})` : ""}, decided by ${j.result.decided_by ?? "-"} — ${j.result.tested_reason} [${duration(j.result.duration_ms / 1000)}, ${j.result.tested_engine}]`
      : `${j.model}: probe failed: ${j.error}`).join("\n"));
    return jobs.every((j) => j.state === "done") ? 0 : 1;
  },
});

import { clientCommand } from "../client-command.ts";
import { bytes, duration, table } from "../table.ts";

interface Ps {
  memory_budget_bytes: number;
  memory_in_use_bytes: number;
  data: { id: string; memory_bytes: number | null; loaded_context_length: number; parallel: number; threads: number; flash_attention: string | null; active_requests: number; queued_requests: number; idle_seconds: number | null; expires_at: string | null }[];
}

export const ps = clientCommand({
  summary: "List loaded models with memory, context and activity",
  usage: "ps [--json]",
  async run({ client, print }) {
    const p = await client.get<Ps>("/admin/v1/ps");
    print(p, () => [
      p.data.length === 0 ? "No models loaded." : table(["ID", "MEMORY", "CONTEXT", "PARALLEL", "THREADS", "FLASH ATTN", "ACTIVE", "QUEUED", "IDLE", "UNTIL"],
        p.data.map((m) => [m.id, bytes(m.memory_bytes), m.loaded_context_length, m.parallel, m.threads, m.flash_attention ?? "-", m.active_requests, m.queued_requests, duration(m.idle_seconds), m.expires_at ?? "forever"])),
      "",
      `memory: ${bytes(p.memory_in_use_bytes)} of ${bytes(p.memory_budget_bytes)} budget`,
    ].join("\n"));
    return 0;
  },
});

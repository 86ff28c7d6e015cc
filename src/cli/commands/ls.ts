import { clientCommand } from "../client-command.ts";
import { bytes, table } from "../table.ts";

interface Row {
  id: string; format: string; state: string; size_bytes: number | null; quantization: string | null;
  max_context_length: number | null; loaded_context_length: number | null; origin: string; source_repo: string | null;
  tested_context_length: number | null; tested_stale: boolean | null; tested_at: string | null; tested_memory_bytes: number | null; tested_engine: string | null;
}

function tested(m: Row): string | null {
  if (m.tested_context_length === null) return null;
  const mem = m.tested_memory_bytes ? ` ${bytes(m.tested_memory_bytes)}` : "";
  return `${m.tested_context_length}${mem}${m.tested_stale ? " (stale)" : ""} ${m.tested_at?.slice(0, 10)} ${m.tested_engine?.replace(/^node-llama-cpp /, "nlc ") ?? ""}`.trim();
}

export const ls = clientCommand({
  summary: "List local models",
  usage: "ls [--json]",
  async run({ client, print }) {
    const { data } = await client.get<{ data: Row[] }>("/admin/v1/models");
    print(data, () => data.length === 0
      ? "No models yet. Download one with 'lmx pull <org/repo>', or put .gguf files in the models directory."
      : table(["ID", "FORMAT", "SIZE", "QUANT", "DECLARED CTX", "TESTED CTX", "STATE", "SOURCE"],
        data.map((m) => [m.id, m.format, bytes(m.size_bytes), m.quantization, m.max_context_length, tested(m), m.state === "ready" ? `loaded (${m.loaded_context_length})` : m.state, m.source_repo ?? m.origin])));
    return 0;
  },
});

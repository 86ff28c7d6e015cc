import { clientCommand } from "../client-command.ts";
import { encodeId } from "../client.ts";
import { bytes } from "../table.ts";

interface Show {
  id: string; format: string; path: string; state: string; architecture: string | null; quantization: string | null; size_bytes: number | null;
  max_context_length: number | null; loaded_context_length: number | null; source_repo: string | null; revision: string | null; origin: string;
  aliases: string[]; load_defaults: Record<string, unknown>; has_chat_template: boolean | null; embedding_model: boolean | null;
  history: { event: string; at: string; context_length: number | null; duration_ms: number | null; error: string | null }[];
}

export const show = clientCommand({
  summary: "Show a model's details, defaults and load history",
  usage: "show <model> [--json]",
  minArgs: 1,
  async run({ client, args, print }) {
    const m = await client.get<Show>(`/admin/v1/models/${encodeId(args[0]!)}`);
    print(m, () => [
      `${m.id}`,
      `  format        ${m.format}${m.architecture ? ` (${m.architecture})` : ""}`,
      `  path          ${m.path}`,
      `  size          ${bytes(m.size_bytes)}${m.quantization ? `, ${m.quantization}` : ""}`,
      `  context       declared ${m.max_context_length ?? "-"}${m.loaded_context_length ? `, loaded ${m.loaded_context_length}` : ""}`,
      `  state         ${m.state}`,
      `  source        ${m.source_repo ? `${m.source_repo}@${m.revision}` : m.origin}`,
      `  chat template ${m.has_chat_template ? "yes" : "no (general fallback)"}${m.embedding_model ? "; embedding model" : ""}`,
      ...(m.aliases.length ? [`  aliases       ${m.aliases.join(", ")}`] : []),
      ...(Object.keys(m.load_defaults).length ? [`  defaults      ${JSON.stringify(m.load_defaults)}`] : []),
      ...(m.history.length ? ["  history", ...m.history.slice(0, 10).map((h) => `    ${h.at}  ${h.event}${h.context_length ? ` ctx ${h.context_length}` : ""}${h.duration_ms ? ` in ${h.duration_ms} ms` : ""}${h.error ? `: ${h.error}` : ""}`)] : []),
    ].join("\n"));
    return 0;
  },
});

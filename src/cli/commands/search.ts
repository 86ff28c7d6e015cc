import { clientCommand } from "../client-command.ts";
import { bytes, table } from "../table.ts";

interface Result {
  repo: string; format: string; downloads: number; gated: boolean; quants: string[];
  defaultSelection: { quant: string | null; bytes: number } | null; fits: boolean | null;
  files: { path: string; size: number; quant: string | null; fits: boolean | null }[];
}

export const search = clientCommand({
  summary: "Search Hugging Face for GGUF and MLX models",
  usage: "search <query> [--limit N] [--json]",
  minArgs: 1,
  settings: [{ key: "limit", kind: "int", min: 1, max: 100, default: 20, flagOnly: true, placeholder: "N", description: "Repos to show." }],
  async run({ client, flags, args, print }) {
    const q = new URLSearchParams({ q: args.join(" "), limit: String(flags.limit ?? 20) });
    const { data } = await client.get<{ data: Result[] }>(`/admin/v1/hub/search?${q}`);
    print(data, () => data.length === 0 ? "No GGUF or MLX repos found." : table(
      ["REPO", "FORMAT", "DEFAULT", "SIZE", "FITS", "QUANTS", "DOWNLOADS"],
      data.map((r) => [r.repo + (r.gated ? " (gated)" : ""), r.format, r.defaultSelection?.quant ?? (r.format === "mlx" ? "snapshot" : null),
        bytes(r.defaultSelection?.bytes), r.fits === null ? null : r.fits ? "yes" : "no", r.quants.join(","), r.downloads])));
    return 0;
  },
});

import { clientCommand } from "../client-command.ts";
import { table } from "../table.ts";

interface Result { imported: { id: string; path: string; source: string }[]; skipped: { path: string; reason: string }[] }

export const importCmd = clientCommand({
  summary: "Register models from LM Studio, Ollama or folders (no copying)",
  usage: "import [PATH ...] [--lmstudio] [--ollama]",
  description: "Registers GGUF files and MLX folders already on this machine. With no arguments, scans LM Studio's and Ollama's model folders.",
  settings: [
    { key: "lmstudio", kind: "bool", default: false, flagOnly: true, description: "Scan LM Studio's model folder." },
    { key: "ollama", kind: "bool", default: false, flagOnly: true, description: "Scan Ollama's model store." },
  ],
  async run({ client, flags, args, print }) {
    const body = { paths: args.length ? args : undefined, lmstudio: flags.lmstudio || undefined, ollama: flags.ollama || undefined };
    const r = await client.post<Result>("/admin/v1/import", body);
    print(r, () => [
      r.imported.length ? table(["ID", "SOURCE", "PATH"], r.imported.map((m) => [m.id, m.source, m.path])) : "Nothing new to import.",
      ...(r.skipped.length ? ["", `skipped ${r.skipped.length}:`, ...r.skipped.map((s) => `  ${s.path}: ${s.reason}`)] : []),
    ].join("\n"));
    return 0;
  },
});

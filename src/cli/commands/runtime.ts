import { UsageError } from "../../errors.ts";
import { clientCommand } from "../client-command.ts";
import type { LmxClient } from "../client.ts";
import { table } from "../table.ts";

/** What /admin/v1/runtimes/{name} answers. */
interface RuntimeStatus {
  installed: boolean;
  source: "managed" | "external" | null;
  path: string | null;
  python: { path: string; version: string | null } | null;
  packages: Record<string, string>;
  pinned: Record<string, string>;
  up_to_date: boolean;
  device: string | null;
  verified_at: string | null;
  install_command: string;
}

const ACTIONS = ["status", "install", "update", "remove"] as const;
type Action = (typeof ACTIONS)[number];

function describe(s: RuntimeStatus): string {
  if (!s.installed) return `mlx: not installed (pinned mlx ${s.pinned.mlx}, mlx-lm ${s.pinned["mlx-lm"]}). Install it with '${s.install_command}'.`;
  const rows: [string, string][] = [
    ["runtime", "mlx"],
    ["source", s.source === "external" ? "external (python setting)" : "managed by lmx"],
    ["python", `${s.python?.path ?? "-"}${s.python?.version ? ` (${s.python.version})` : ""}`],
    ["packages", Object.entries(s.packages).map(([k, ver]) => `${k} ${ver}`).join(", ") || "-"],
    ["pinned", Object.entries(s.pinned).map(([k, ver]) => `${k} ${ver}`).join(", ") + (s.up_to_date ? "" : "  (differs: run 'lmx runtime update mlx')")],
    ["device", s.device ?? "-"],
    ["path", s.path ?? "-"],
    ["verified", s.verified_at ?? "-"],
  ];
  return table(["FIELD", "VALUE"], rows);
}

/** POSTs an install/update and shows the server's progress lines as they come. */
async function streamed(client: LmxClient, path: string, body: unknown, json: boolean): Promise<RuntimeStatus> {
  const res = await client.raw("POST", path, body, undefined, { accept: "application/x-ndjson" });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let result: RuntimeStatus | undefined;
  let failure: string | undefined;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) !== -1) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as { type: string; step?: string; message?: string; runtime?: RuntimeStatus; error?: { message: string } };
      if (msg.type === "progress" && !json) process.stderr.write(`[${msg.step}] ${msg.message}\n`);
      else if (msg.type === "result") result = msg.runtime;
      else if (msg.type === "error") failure = msg.error?.message ?? msg.message;
    }
  }
  if (failure !== undefined || !result) throw new RuntimeCommandError(failure ?? "the server ended the install without a result");
  return result;
}

class RuntimeCommandError extends Error {
  override name = "RuntimeCommandError";
}

export const runtime = clientCommand({
  summary: "Install, update, remove or show the MLX runtime",
  usage: "runtime <status|install|update|remove> [mlx] [--python PATH]",
  description:
    "Manages the Python environment MLX models run in (under $LMX_HOME/runtimes/mlx, with pinned mlx and mlx-lm). " +
    "install creates it and checks it with a tiny generation; update reinstalls into a new folder and switches only once the check passes; " +
    "remove deletes it (refused while MLX models are loaded). The server does the work; progress is shown here.",
  settings: [
    { key: "python", kind: "string", flagOnly: true, placeholder: "PATH", description: "Interpreter to build the environment from (default: chosen by uv; a uv-installed CPython on macOS)." },
  ],
  async run({ client, flags, args, json, print }) {
    const action = (args[0] ?? "status") as Action;
    if (!ACTIONS.includes(action)) throw new UsageError(`unknown action '${args[0]}': use ${ACTIONS.join(", ")}`);
    const name = args[1] ?? "mlx";
    if (name !== "mlx") throw new UsageError(`unknown runtime '${name}': LMX manages mlx`);
    try {
      if (action === "status") {
        const s = await client.get<RuntimeStatus>(`/admin/v1/runtimes/${name}`);
        print(s, () => describe(s));
        return 0;
      }
      if (action === "remove") {
        const r = await client.call<{ removed: boolean; path: string | null }>("DELETE", `/admin/v1/runtimes/${name}`);
        print(r, () => (r.removed ? `removed the MLX runtime${r.path ? ` (${r.path})` : ""}` : "the MLX runtime was not installed"));
        return 0;
      }
      const s = await streamed(client, `/admin/v1/runtimes/${name}/${action}`, flags.python ? { python: flags.python } : {}, json);
      print(s, () => describe(s));
      return 0;
    } catch (err) {
      if (err instanceof RuntimeCommandError) {
        console.error(`lmx: ${err.message}`);
        return 1;
      }
      throw err;
    }
  },
});

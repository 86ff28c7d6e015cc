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
  requested: Record<string, string>;
  up_to_date: boolean;
  device: string | null;
  verified_at: string | null;
  install_command: string;
  previous: { path: string; packages: Record<string, string>; requested: Record<string, string> } | null;
}

const ACTIONS = ["status", "install", "update", "rollback", "remove"] as const;
type Action = (typeof ACTIONS)[number];

const list = (r: Record<string, string>) => Object.entries(r).map(([k, ver]) => `${k} ${ver}`).join(", ");

function describe(s: RuntimeStatus): string {
  if (!s.installed) return `mlx: not installed (pinned mlx ${s.pinned.mlx}, mlx-lm ${s.pinned["mlx-lm"]}). Install it with '${s.install_command}'.`;
  const rows: [string, string][] = [
    ["runtime", "mlx"],
    ["source", s.source === "external" ? "external (python setting)" : "managed by lmx"],
    ["python", `${s.python?.path ?? "-"}${s.python?.version ? ` (${s.python.version})` : ""}`],
    ["packages", Object.entries(s.packages).map(([k, ver]) => `${k} ${ver}`).join(", ") || "-"],
    ...(Object.keys(s.requested).length > 0 ? [["chosen", list(s.requested)] as [string, string]] : []),
    ["pinned", list(s.pinned) + (s.up_to_date ? "" : "  (differs: 'lmx runtime update mlx' installs the pins)")],
    ["previous", s.previous ? `${list(s.previous.packages)}  ('lmx runtime rollback mlx' switches back)` : "-"],
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
  usage: "runtime <status|install|update|rollback|remove> [mlx] [--python PATH] [--mlx-lm VERSION|git+URL[@REF]] [--mlx VERSION]",
  description:
    "Manages the Python environment MLX models run in (under $LMX_HOME/runtimes/mlx, with pinned mlx and mlx-lm). " +
    "install creates it and checks it with a tiny generation; update reinstalls into a new folder and switches only once the check passes " +
    "(with --mlx-lm / --mlx: those versions instead of the pins, e.g. --mlx-lm git+https://github.com/ml-explore/mlx-lm@main for an architecture merged today); " +
    "rollback switches back to the previous folder, which every update keeps; " +
    "remove deletes it (refused while MLX models are loaded). The server does the work; progress is shown here.",
  settings: [
    { key: "python", kind: "string", flagOnly: true, placeholder: "PATH", description: "Interpreter to build the environment from (default: chosen by uv; a uv-installed CPython on macOS)." },
    { key: "mlxLm", kind: "string", flagOnly: true, placeholder: "SPEC", description: "install/update: mlx-lm to install instead of the pin: a version (0.32.1) or git+https://HOST/REPO[@REF] (git+file:// too)." },
    { key: "mlx", kind: "string", flagOnly: true, placeholder: "VERSION", description: "install/update: mlx version to install instead of the pin." },
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
      const body = action === "rollback" ? {} : { python: flags.python, mlx_lm: flags.mlxLm, mlx: flags.mlx };
      const s = await streamed(client, `/admin/v1/runtimes/${name}/${action}`, body, json);
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

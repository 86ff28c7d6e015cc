import { UsageError } from "../../errors.ts";
import { clientCommand } from "../client-command.ts";
import { table } from "../table.ts";

interface PeerJson {
  name: string;
  url: string;
  source: string;
  state: string;
  latency_ms: number | null;
  last_error: string | null;
  models: string[];
  has_api_key: boolean;
  api_key_env: string | null;
}

const USAGE = "peers add NAME URL [--api-key-env VAR] | peers ls [--json] | peers rm NAME";

export const peers = clientCommand({
  summary: "Manage peers: other LMX or OpenAI-compatible servers whose models this one serves",
  usage: USAGE,
  description: "Peers added here are kept by the server across restarts; their models show in /v1/models and are proxied on every API. " +
    "A peer's key is read by the server from its own environment (--api-key-env), so it never passes through this command.",
  minArgs: 1,
  settings: [
    { key: "apiKeyEnv", kind: "string", flagOnly: true, placeholder: "VAR", description: "Environment variable of the server that holds the peer's API key." },
  ],
  async run({ client, flags, args, print }) {
    const [action, name, url] = args;
    if (action === "add" && name && url && args.length === 3) {
      const p = await client.post<PeerJson>("/admin/v1/peers", { name, url, ...(flags.apiKeyEnv ? { api_key_env: flags.apiKeyEnv } : {}) });
      print(p, () => `added peer ${p.name} (${p.url}): ${p.state}${p.last_error ? ` (${p.last_error})` : `, ${p.models.length} models`}`);
      return 0;
    }
    if ((action === "ls" || action === "list") && args.length === 1) {
      const { data } = await client.get<{ data: PeerJson[] }>("/admin/v1/peers");
      print(data, () => data.length === 0 ? "No peers." : table(["NAME", "URL", "STATE", "LATENCY", "MODELS", "KEY", "SOURCE", "LAST ERROR"],
        data.map((p) => [p.name, p.url, p.state, p.latency_ms === null ? null : `${p.latency_ms} ms`, p.models.length, p.api_key_env ? `$${p.api_key_env}` : p.has_api_key ? "set" : null, p.source, p.last_error])));
      return 0;
    }
    if (action === "rm" && name && args.length === 2) {
      const r = await client.call<{ name: string }>("DELETE", `/admin/v1/peers/${encodeURIComponent(name)}`);
      print(r, () => `removed peer ${r.name}`);
      return 0;
    }
    throw new UsageError(`usage: lmx ${USAGE}`);
  },
});

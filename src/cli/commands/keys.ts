import { UsageError } from "../../errors.ts";
import { clientCommand } from "../client-command.ts";
import { table } from "../table.ts";

interface Key { id: string; name: string | null; scope: string; prefix: string; createdAt: number; lastUsedAt: number | null; revokedAt: number | null; key?: string; admin_key?: Key }

const date = (t: number | null) => (t ? new Date(t).toISOString().slice(0, 19).replace("T", " ") : null);

export const keys = clientCommand({
  summary: "Manage API keys: create, list, revoke",
  usage: "keys create --scope admin|inference [--name N] | keys list | keys revoke <id|name|prefix>",
  minArgs: 1,
  settings: [
    { key: "scope", kind: "string", default: "inference", flagOnly: true, placeholder: "SCOPE", description: "admin (everything) or inference (/v1 only)." },
    { key: "name", kind: "string", flagOnly: true, placeholder: "NAME", description: "A label for the key." },
  ],
  async run({ client, flags, args, print }) {
    const [action, ref] = args;
    if (action === "create") {
      if (flags.scope !== "admin" && flags.scope !== "inference") throw new UsageError("--scope must be admin or inference");
      const k = await client.post<Key>("/admin/v1/keys", { scope: flags.scope, name: flags.name });
      print(k, () => `${k.key}\n\nThis ${k.scope} key (${k.id}) is shown only now: store it. Clients send it as 'Authorization: Bearer <key>'.` +
        (k.admin_key ? `\n\n${k.admin_key.key}\n\nThis admin key (${k.admin_key.id}) was created with it: the first key turns authentication on, and /admin routes (and 'lmx' commands) need an admin key. It is shown only now: store it (e.g. as LMX_API_KEY for the lmx commands).` : ""));
      return 0;
    }
    if (action === "list") {
      const { data } = await client.get<{ data: Key[] }>("/admin/v1/keys");
      print(data, () => table(["ID", "NAME", "SCOPE", "PREFIX", "CREATED", "LAST USED", "REVOKED"],
        data.map((k) => [k.id, k.name, k.scope, k.prefix + "…", date(k.createdAt), date(k.lastUsedAt), date(k.revokedAt)])));
      return 0;
    }
    if (action === "revoke" && ref) {
      const k = await client.call<Key>("DELETE", `/admin/v1/keys/${encodeURIComponent(ref)}`);
      print(k, () => `revoked ${k.id}${k.name ? ` (${k.name})` : ""}`);
      return 0;
    }
    throw new UsageError("usage: lmx keys create --scope admin|inference [--name N] | keys list | keys revoke <id|name|prefix>");
  },
});

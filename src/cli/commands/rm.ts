import { clientCommand } from "../client-command.ts";
import { encodeId } from "../client.ts";

export const rm = clientCommand({
  summary: "Delete a downloaded model (imported models are only forgotten)",
  usage: "rm <model>",
  minArgs: 1,
  async run({ client, args, print }) {
    const r = await client.call<{ id: string; files_deleted: boolean }>("DELETE", `/admin/v1/models/${encodeId(args[0]!)}`);
    print(r, () => `deleted ${r.id}${r.files_deleted ? "" : " (registry entry only; its files were not LMX's)"}`);
    return 0;
  },
});

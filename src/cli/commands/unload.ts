import { clientCommand } from "../client-command.ts";
import { encodeId } from "../client.ts";

export const unload = clientCommand({
  summary: "Unload a model",
  usage: "unload <model>",
  minArgs: 1,
  async run({ client, args, print }) {
    const r = await client.post<{ id: string; unloaded: boolean }>(`/admin/v1/models/${encodeId(args[0]!)}/unload`);
    print(r, () => (r.unloaded ? `unloaded ${r.id}` : `${r.id} was not loaded`));
    return 0;
  },
});

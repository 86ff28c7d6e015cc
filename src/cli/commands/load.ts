import { clientCommand } from "../client-command.ts";
import { encodeId } from "../client.ts";
import { bytes } from "../table.ts";

export const load = clientCommand({
  summary: "Load a model (checks the memory budget first)",
  usage: "load <model> [--ctx N] [--parallel N] [--threads N] [--gpu-layers N] [--ttl SECONDS] [--save]",
  minArgs: 1,
  settings: [
    { key: "ctx", kind: "int", min: 1, flagOnly: true, placeholder: "N", description: "Context length per sequence." },
    { key: "parallel", kind: "int", min: 1, flagOnly: true, placeholder: "N", description: "Parallel sequences." },
    { key: "threads", kind: "int", min: 1, flagOnly: true, placeholder: "N", description: "CPU threads." },
    { key: "gpuLayers", kind: "int", min: 0, flagOnly: true, placeholder: "N", description: "Layers to offload to the GPU." },
    { key: "ttl", kind: "int", min: 0, flagOnly: true, placeholder: "SECONDS", description: "Unload after this many idle seconds (0: never)." },
    { key: "save", kind: "bool", default: false, flagOnly: true, description: "Remember these settings as the model's defaults." },
  ],
  async run({ client, flags, args, print }) {
    const body = { context_length: flags.ctx, parallel: flags.parallel, threads: flags.threads, gpu_layers: flags.gpuLayers, ttl: flags.ttl, save: flags.save || undefined };
    const m = await client.post<{ id: string; loaded_context_length: number; memory_bytes: number; parallel: number; threads: number }>(`/admin/v1/models/${encodeId(args[0]!)}/load`, body);
    print(m, () => `loaded ${m.id}: context ${m.loaded_context_length} × ${m.parallel}, ${m.threads} threads, ${bytes(m.memory_bytes)}`);
    return 0;
  },
});

import { loadSettingsToBody } from "../../api/admin/schemas.ts";
import * as v from "valibot";
import { FLASH_ATTENTION_MODES, LOAD_SETTING_BOUNDS as B, loadSettingFields, SPECULATIVE_MODES } from "../../config/load-settings.ts";
import type { Setting } from "../../config/settings.ts";
import { clientCommand } from "../client-command.ts";
import { encodeId } from "../client.ts";
import { bytes } from "../table.ts";

/** The load settings as flags; bounds from the shared vocabulary. */
export const loadFlags = [
  { key: "ctx", kind: "int", ...B.contextLength, flagOnly: true, placeholder: "N", description: "Context length per sequence (0: the model's declared context)." },
  { key: "parallel", kind: "int", ...B.parallel, flagOnly: true, placeholder: "N", description: "Parallel sequences." },
  { key: "threads", kind: "int", ...B.threads, flagOnly: true, placeholder: "N", description: "CPU threads (0: the server's default)." },
  { key: "gpuLayers", kind: "int", ...B.gpuLayers, flagOnly: true, placeholder: "N", description: "Layers to offload to the GPU." },
  { key: "ttl", kind: "int", ...B.ttl, flagOnly: true, placeholder: "SECONDS", description: "Unload after this many idle seconds (0: never)." },
  { key: "flashAttention", kind: "string", choices: FLASH_ATTENTION_MODES, flagOnly: true, placeholder: "MODE", description: "Flash attention: auto (chosen per backend and head size), on or off." },
  { key: "speculative", kind: "string", choices: SPECULATIVE_MODES, flagOnly: true, placeholder: "MODE", description: "Speculative decoding: off, lookup (from the prompt) or draft (needs --draft)." },
  { key: "draft", kind: "string", flagOnly: true, placeholder: "MODEL", description: "Draft model id for speculative decoding (same vocabulary as the model)." },
  { key: "save", kind: "bool", default: false, flagOnly: true, description: "Remember these settings as the model's defaults." },
] as const satisfies readonly Setting[];

const nodesFlag = {
  key: "nodes", kind: "string", flagOnly: true, placeholder: "local,PEER…",
  description: "Shard an MLX model across these LMX nodes: local (rank 0, serves it) and peer names (docs/scaling.md).",
} as const satisfies Setting;

export const load = clientCommand({
  summary: "Load a model (checks the memory budget first)",
  usage: "load <model> [--ctx N] [--parallel N] [--threads N] [--gpu-layers N] [--ttl SECONDS] [--flash-attention auto|on|off] [--speculative off|lookup|draft] [--draft MODEL] [--save] [--nodes local,PEER…]",
  minArgs: 1,
  settings: [...loadFlags, nodesFlag],
  async run({ client, flags, args, print }) {
    const settings = { contextLength: flags.ctx, parallel: flags.parallel, threads: flags.threads, gpuLayers: flags.gpuLayers, ttl: flags.ttl,
      flashAttention: v.parse(loadSettingFields.flashAttention, flags.flashAttention),
      speculative: v.parse(loadSettingFields.speculative, flags.speculative), draft: v.parse(loadSettingFields.draft, flags.draft) };
    const nodes = flags.nodes?.split(",").map((n) => n.trim()).filter(Boolean);
    const body = { ...loadSettingsToBody(settings), save: flags.save || undefined, nodes };
    const m = await client.post<{ id: string; loaded_context_length: number; memory_bytes: number; parallel: number; threads: number; flash_attention: string | null;
      speculative: { mode: string; draft: string | null } | null; rank?: number; of?: number }>(`/admin/v1/models/${encodeId(args[0]!)}/load`, body);
    const flash = m.flash_attention === null ? "" : `, flash attention ${m.flash_attention}`;
    const spec = m.speculative === null ? "" : `, speculative ${m.speculative.mode}${m.speculative.draft === null ? "" : ` (draft ${m.speculative.draft})`}`;
    const across = m.of === undefined ? "" : ` across ${nodes?.join(", ")} (rank 0 of ${m.of} here)`;
    print(m, () => `loaded ${m.id}${across}: context ${m.loaded_context_length} × ${m.parallel}, ${m.threads} threads${flash}${spec}, ${bytes(m.memory_bytes)}${across ? " on this node" : ""}`);
    return 0;
  },
});

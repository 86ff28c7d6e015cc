// Request shapes of the admin API (/admin/v1), for bots that manage the machine's models.
import * as v from "valibot";
import { layerLoadSettings, type LoadSettings, loadSettingFields } from "../../config/load-settings.ts";

const positiveInt = (max: number) => v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(max)));

/** The load settings (src/config/load-settings.ts) under their snake_case wire names. */
export const loadSettingsEntries = {
  context_length: loadSettingFields.contextLength,
  parallel: loadSettingFields.parallel,
  threads: loadSettingFields.threads,
  gpu_layers: loadSettingFields.gpuLayers,
  ttl: loadSettingFields.ttl,
  flash_attention: loadSettingFields.flashAttention,
  speculative: loadSettingFields.speculative,
  draft: loadSettingFields.draft,
};
export const LoadSettingsBody = v.object(loadSettingsEntries);
export type LoadSettingsBody = v.InferOutput<typeof LoadSettingsBody>;

export function loadSettingsFromBody(b: LoadSettingsBody): LoadSettings {
  return layerLoadSettings({ contextLength: b.context_length, parallel: b.parallel, threads: b.threads, gpuLayers: b.gpu_layers, ttl: b.ttl, flashAttention: b.flash_attention,
    speculative: b.speculative, draft: b.draft });
}

export function loadSettingsToBody(s: LoadSettings): LoadSettingsBody {
  return { context_length: s.contextLength, parallel: s.parallel, threads: s.threads, gpu_layers: s.gpuLayers, ttl: s.ttl, flash_attention: s.flashAttention,
    speculative: s.speculative, draft: s.draft };
}

export const LoadBody = v.object({
  ...loadSettingsEntries,
  /** Also remember these settings as the model's defaults (used by JIT loads). */
  save: v.optional(v.boolean()),
  /** Shard an MLX model across these nodes: "local" (this node, rank 0, which serves it) and peer names. */
  nodes: v.optional(v.pipe(v.array(v.pipe(v.string(), v.minLength(1), v.maxLength(100))), v.minLength(1), v.maxLength(16))),
});
export type LoadBody = v.InferOutput<typeof LoadBody>;

/** Body of POST /admin/v1/models/{id}/{load|unload|probe}: the load fields, or the probe fields. */
export const ModelActionBody = v.object({
  ...LoadBody.entries,
  /** probe: largest context to try (default: the declared context). */
  max: positiveInt(1_048_576),
  /** probe: smallest context to try first (default 128). */
  min: positiveInt(1_048_576),
  /** probe: time budget in minutes (default 30). */
  budget_minutes: v.optional(v.pipe(v.number(), v.minValue(0.1), v.maxValue(24 * 60))),
});

export const PatchModelBody = v.object({
  load_defaults: v.optional(LoadSettingsBody),
  aliases: v.optional(v.array(v.pipe(v.string(), v.regex(/^[\w.:/-]{1,200}$/, "aliases use letters, digits and . _ : / -")))),
});

/**
 * PUT /admin/v1/routes/{name}: where requests for that name go (a model id or alias, or PEER/model);
 * a fallback chain is its targets joined by commas (each at most 200 characters, at most 8 of them).
 */
export const RouteBody = v.object({ model: v.pipe(v.string(), v.minLength(1), v.maxLength(1608)) });

export const DownloadBody = v.object({
  /** org/repo, org/repo:QUANT or org/repo:file.gguf */
  model: v.pipe(v.string(), v.minLength(3), v.maxLength(300)),
  // The revision becomes a path in the hub cache (snapshots/<revision>/…): no way out of it.
  revision: v.optional(v.pipe(v.string(), v.regex(/^[\w.\-/]{1,200}$/, "not a valid revision"),
    v.check((r) => r.split("/").every((part) => part !== "" && part !== "." && part !== ".."), "a revision has no empty, '.' or '..' path parts"))),
});

export const SearchQuery = v.object({
  q: v.pipe(v.string(), v.minLength(1), v.maxLength(200)),
  limit: v.optional(v.pipe(v.string(), v.transform(Number), v.number(), v.integer(), v.minValue(1), v.maxValue(100))),
});

export const ImportBody = v.object({
  paths: v.optional(v.array(v.pipe(v.string(), v.minLength(1)))),
  lmstudio: v.optional(v.boolean()),
  ollama: v.optional(v.boolean()),
});

export const KeyBody = v.object({
  scope: v.picklist(["admin", "inference"]),
  name: v.optional(v.pipe(v.string(), v.maxLength(100))),
});

/** POST /admin/v1/engines/builds: what to build; ref and repository are checked again by the build itself. */
export const EngineBuildBody = v.object({
  /** A llama.cpp release tag (b6000), a commit, a branch or pr/NUMBER. */
  ref: v.pipe(v.string(), v.minLength(1), v.maxLength(200)),
  /** Default: the server's llamaRepo setting. */
  llama_repo: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(2000))),
  /** Absolute path of a small GGUF to verify with; default: the smallest registered GGUF model. */
  verify_model: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(4096))),
  /** Compile for this machine's CPU only (faster; not portable). */
  native: v.optional(v.boolean()),
});

/** POST /admin/v1/engines/update: a published engine version; default: the newest compatible one. */
export const EngineUpdateBody = v.object({
  version: v.optional(v.pipe(v.string(), v.regex(/^[0-9A-Za-z.+-]{1,100}$/, "a version such as 3.22.0"))),
});

/** POST /admin/v1/engines/use: an installed, built or the embedded engine. */
export const EngineUseBody = v.object({
  version: v.pipe(v.string(), v.regex(/^[0-9A-Za-z.+-]{1,100}$/, "a version such as 3.22.0")),
});

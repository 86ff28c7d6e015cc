// The one vocabulary for how a model is loaded. Every surface that accepts per-model load settings
// (config.json, `lmx load` flags, the admin API's load and PATCH bodies, the registry's saved
// defaults, the context probe) speaks `LoadSettings`; the engines receive `ResolvedLoadSettings`,
// the same settings with every choice made. The bounds are declared once, here.
//
// It lives in config/, a foundation every layer may import (engines included), so config, the
// admin API, the scheduler and the engines share it without an import running upward.

import * as v from "valibot";

const int = (min: number, max: number) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));

/** Bounds of each setting, also used by the CLI's flag parser. */
export const LOAD_SETTING_BOUNDS = {
  contextLength: { min: 0, max: 1_048_576 },
  parallel: { min: 1, max: 64 },
  threads: { min: 0, max: 1024 },
  gpuLayers: { min: 0, max: 10_000 },
  ttl: { min: 0, max: 31_536_000 },
} as const;

const b = LOAD_SETTING_BOUNDS;

/**
 * Flash attention: "auto" lets LMX choose per backend and model shape (src/engines/llama/flash-attention.ts,
 * measured in docs/performance.md); "on" and "off" force it. GGUF models only.
 */
export const FLASH_ATTENTION_MODES = ["auto", "on", "off"] as const;
export type FlashAttentionMode = (typeof FLASH_ATTENTION_MODES)[number];

/**
 * Speculative decoding of GGUF models: "lookup" drafts tokens by finding the text so far in the
 * prompt (no draft model); "draft" has a small model with the same vocabulary draft them; "off"
 * decodes one token per step. Either way the target model checks every drafted token, so the
 * output is what plain decoding gives.
 */
export const SPECULATIVE_MODES = ["off", "lookup", "draft"] as const;
export type SpeculativeMode = (typeof SPECULATIVE_MODES)[number];

/** Longest `draft` value accepted: a model id or a file path. */
export const DRAFT_MAX_LENGTH = 4096;

/** The field schemas, for wire formats that name the same settings differently. */
export const loadSettingFields = {
  /** Tokens each parallel sequence can hold; 0: the model's declared context. */
  contextLength: v.optional(int(b.contextLength.min, b.contextLength.max)),
  /** Parallel sequences served at once by one loaded instance. */
  parallel: v.optional(int(b.parallel.min, b.parallel.max)),
  /** CPU threads; 0: the server's default. */
  threads: v.optional(int(b.threads.min, b.threads.max)),
  /** Upper bound on layers offloaded to an accelerator; 0 keeps everything on the CPU. */
  gpuLayers: v.optional(int(b.gpuLayers.min, b.gpuLayers.max)),
  /** Idle seconds before the model unloads itself; 0 keeps it loaded. */
  ttl: v.optional(int(b.ttl.min, b.ttl.max)),
  /** Flash attention: "auto" (LMX's measured rule), "on" or "off". */
  flashAttention: v.optional(v.picklist(FLASH_ATTENTION_MODES)),
  /** Speculative decoding: "off", "lookup" (prompt lookup) or "draft" (needs `draft`). */
  speculative: v.optional(v.picklist(SPECULATIVE_MODES)),
  /** The draft model: a model id, or (server settings and config.json only) a GGUF path. Implies "draft" when `speculative` is unset. */
  draft: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(DRAFT_MAX_LENGTH))),
};

/** Per-model load settings, every one optional: unset means "the next layer down decides". */
export const LoadSettings = v.object(loadSettingFields);
export type LoadSettings = v.InferOutput<typeof LoadSettings>;

/** What an engine loads with: the settings after layering and defaults, nothing left open. */
export interface ResolvedLoadSettings {
  contextLength: number;
  parallel: number;
  threads: number;
  gpuLayers?: number;
  /** Tokens per prompt-processing batch (a server-wide setting, not per model). */
  batchSize?: number;
  /** As asked; the engine turns "auto" into its choice (reported as the loaded model's `flashAttention`). */
  flashAttention?: FlashAttentionMode;
  /** Speculative decoding; absent: off. The draft is resolved to its file by the scheduler. */
  speculative?: ResolvedSpeculative;
  /** This load is one rank of a model sharded across nodes (MLX only); absent: the whole model here. */
  distributed?: Placement;
}

/** Where one rank of a model sharded across LMX nodes sits (set by the coordinating node, never saved). */
export interface Placement {
  /** Names this group: the same on every node, new for every load. */
  group: string;
  rank: number;
  /** Ranks in the group. */
  size: number;
  /** Each rank's node name as the coordinator calls it ("local" is the coordinator itself), by rank. */
  nodes: string[];
  /** The coordinating node's host name, for the other nodes' status output. */
  coordinator: string;
  /** Each rank's "ip:port" for the ring backend, by rank. */
  hosts: string[];
  /** Seconds a rank waits for all the others to connect. */
  joinTimeoutS: number;
}

export type ResolvedSpeculative = { mode: "lookup" } | { mode: "draft"; draftId: string; draftPath: string };

/** The mode the settings ask for: `speculative` when set, else "draft" when a draft is named, else "off". */
export function speculativeMode(s: LoadSettings): SpeculativeMode {
  return s.speculative ?? (s.draft !== undefined ? "draft" : "off");
}

/** Layers settings, later ones winning; an unset field never hides an earlier value. */
export function layerLoadSettings(...layers: (LoadSettings | undefined)[]): LoadSettings {
  const out: LoadSettings = {};
  for (const layer of layers) {
    if (!layer) continue;
    for (const [k, value] of Object.entries(layer) as [keyof LoadSettings, LoadSettings[keyof LoadSettings]][]) {
      if (value !== undefined) (out as Record<string, unknown>)[k] = value;
    }
  }
  return out;
}

// The scheduler's public types: its settings, the lease a request holds, a model's status.
import type { FlashAttentionMode, LoadSettings } from "../config/load-settings.ts";
import type { LoadedModel, MemoryEstimate, ModelDescriptor, ModelInfo, ResolvedLoadSettings, SpeculativeStatus } from "../engines/types.ts";
import type { EventBus } from "../events/bus.ts";
import type { ModelState } from "./lifecycle.ts";

/**
 * Server-wide settings of the scheduler (from `lmx serve` flags, env and config.json). `load` is the
 * bottom layer of every model's load settings; the rest are not per-load settings.
 */
export interface SchedulerSettings {
  /** contextLength undefined: DEFAULT_CONTEXT capped at the declared context; 0: the declared context. */
  load: LoadSettings & { parallel: number; threads: number; ttl: number };
  batchSize?: number;
  /** Requests that may wait for a sequence, per model. */
  queueLimit: number;
  /** Bytes of RAM all loaded models together may use. */
  memoryBudget: number;
}

/** The settings a model loads with, plus the idle time after which it unloads itself. */
export type ModelLoad = ResolvedLoadSettings & { ttl: number };

export interface Lease {
  model: LoadedModel;
  /** Aborted when the client goes away or the model is unloaded under the request. */
  signal: AbortSignal;
  release: () => void;
}

export interface ModelStatus {
  descriptor: ModelDescriptor;
  info?: ModelInfo;
  infoError?: string;
  state: ModelState;
  loadedContextLength?: number;
  options?: ResolvedLoadSettings;
  /** The loaded model's flash attention as the engine chose it. */
  flashAttention?: FlashAttentionMode;
  speculative?: SpeculativeStatus;
  memory?: MemoryEstimate;
  running: number;
  queued: number;
  lastUsed?: number;
  loadedAt?: number;
  ttlSeconds?: number;
}

export interface ModelOccupancy {
  id: string;
  /** The engine that serves the model's format (its name, e.g. llama.cpp). */
  engine: string;
  loaded: boolean;
  memoryBytes: number;
  running: number;
  queued: number;
}

export interface SchedulerSeams {
  /** Saved per-model defaults (registry), layered under the settings of one load request. */
  savedDefaults?: (id: string) => LoadSettings | undefined;
  events?: EventBus;
  /** The measured working context (context probe), used when a load names no context length. */
  testedContext?: (descriptor: ModelDescriptor) => Promise<number | undefined>;
  now?: () => number;
}

// What the scheduler reports about a model: its status for the APIs (with what the engine read
// from the file) and its occupancy for each metrics scrape (without reading the file).

import type { ModelDescriptor, ModelInfo } from "../engines/types.ts";
import { type Entry, totalBytes } from "./entry.ts";
import type { ModelOccupancy, ModelStatus } from "./types.ts";

export function statusOf(descriptor: ModelDescriptor, e: Entry | undefined, info: ModelInfo | undefined, infoError: string | undefined): ModelStatus {
  return {
    descriptor,
    info,
    infoError,
    state: e?.lifecycle.state ?? "unloaded",
    loadedContextLength: e?.loaded?.contextLength,
    options: e?.loaded?.options,
    flashAttention: e?.loaded?.flashAttention,
    speculative: e?.loaded?.speculative?.(),
    memory: e?.memory,
    running: e?.slots?.running ?? 0,
    queued: e?.slots?.queued ?? 0,
    lastUsed: e?.loaded ? e.lastUsed : undefined,
    loadedAt: e?.loaded ? e.loadedAt : undefined,
    ttlSeconds: e?.loaded ? e.ttlSeconds : undefined,
  };
}

export function occupancyOf(d: ModelDescriptor, e: Entry | undefined, engine: string): ModelOccupancy {
  return {
    id: d.id,
    engine,
    loaded: e?.loaded !== undefined,
    memoryBytes: e?.loaded ? totalBytes(e.memory) : 0,
    running: e?.slots?.running ?? 0,
    queued: e?.slots?.queued ?? 0,
  };
}

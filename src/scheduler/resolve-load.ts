// The settings a model loads with: the layers of load settings resolved against the server's
// settings and the model's own metadata, with the measured context shrunk to fit the memory budget.
import { layerLoadSettings, type LoadSettings, type Placement } from "../config/load-settings.ts";
import type { Engine, ModelDescriptor } from "../engines/types.ts";
import type { ModelCatalog } from "../models/catalog.ts";
import { totalBytes } from "./entry.ts";
import { checkContext, checkModelFile, checkThreads } from "./load-limits.ts";
import { resolveSpeculative } from "./speculative.ts";
import type { ModelLoad, SchedulerSeams, SchedulerSettings } from "./types.ts";

/** Context used when neither the user nor the model says otherwise: big enough for chat, small enough for RAM. */
export const DEFAULT_CONTEXT = 4096;

export interface ResolveContext {
  settings: SchedulerSettings;
  /** Per-model settings from config.json. */
  configured: Record<string, LoadSettings>;
  seams: SchedulerSeams;
  catalog: ModelCatalog;
}

/**
 * The settings a model loads with, most specific first: this load request, the model's saved
 * defaults, config.json, server settings, then the model's own metadata.
 */
export async function resolveLoad(ctx: ResolveContext, engine: Engine, descriptor: ModelDescriptor, request: LoadSettings = {}, placement?: Placement): Promise<ModelLoad> {
  const base = ctx.settings.load;
  const saved = ctx.seams.savedDefaults?.(descriptor.id);
  const own = layerLoadSettings(ctx.configured[descriptor.id], saved, request);
  const o = layerLoadSettings(base, own);
  const explicitContext = own.contextLength;
  checkModelFile(descriptor);
  const declared = (await engine.inspect(descriptor)).declaredContextLength;
  const requested = o.contextLength;
  const resolved: ModelLoad = {
    contextLength: 0,
    parallel: o.parallel ?? base.parallel,
    // 0 at any layer means "the server's default".
    threads: o.threads || base.threads,
    gpuLayers: o.gpuLayers,
    flashAttention: o.flashAttention,
    speculative: resolveSpeculative(descriptor, ctx.catalog, { merged: o, own, fromApi: layerLoadSettings(saved, request) }),
    batchSize: ctx.settings.batchSize,
    // A follower rank lives as long as its group: the coordinator's rank 0 decides when it ends.
    ttl: placement && placement.rank > 0 ? 0 : o.ttl ?? base.ttl,
    ...(placement ? { distributed: placement } : {}),
  };
  const tested = requested === undefined ? await ctx.seams.testedContext?.(descriptor) : undefined;
  if (tested !== undefined) {
    // The measured context, shrunk until it fits the memory budget.
    resolved.contextLength = tested;
    while (resolved.contextLength > 256) {
      const est = await engine.estimateMemory(descriptor, resolved);
      if (totalBytes(est) <= ctx.settings.memoryBudget) break;
      resolved.contextLength = Math.floor((resolved.contextLength * 3) / 4);
    }
  } else if (requested === undefined) resolved.contextLength = Math.min(DEFAULT_CONTEXT, declared ?? DEFAULT_CONTEXT);
  else if (requested === 0) resolved.contextLength = declared ?? DEFAULT_CONTEXT;
  // The server-wide --ctx serves models of every size: capped at what each declares. A context
  // asked for this model in particular is checked against its declared one instead.
  else if (explicitContext === undefined) resolved.contextLength = Math.min(requested, declared ?? requested);
  else resolved.contextLength = requested;
  checkContext(descriptor, resolved.contextLength, declared);
  checkThreads(resolved.threads, `model '${descriptor.id}'`);
  return resolved;
}

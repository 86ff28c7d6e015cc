// The settings a model loads with: the layers of load settings resolved against the server's
// settings and the model's own metadata, with the measured context shrunk to fit the memory budget.
import { layerLoadSettings, type LoadSettings, type Placement } from "../config/load-settings.ts";
import type { Engine, ModelDescriptor } from "../engines/types.ts";
import type { ModelCatalog } from "../models/catalog.ts";
import { totalBytes } from "./entry.ts";
import { checkContext, checkModelFile, checkThreads } from "./load-limits.ts";
import { parallelFor, resolveSpeculative } from "./speculative.ts";
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

/** The layers of load settings for `descriptor`: saved defaults, the model's own (config.json, saved, this request), all merged. */
function layersOf(ctx: ResolveContext, descriptor: ModelDescriptor, request: LoadSettings): { saved: LoadSettings | undefined; own: LoadSettings; merged: LoadSettings } {
  const saved = ctx.seams.savedDefaults?.(descriptor.id);
  const own = layerLoadSettings(ctx.configured[descriptor.id], saved, request);
  return { saved, own, merged: layerLoadSettings(ctx.settings.load, own) };
}

/** Refuses what a load across nodes cannot have (a draft model) before any node is asked to load a rank. */
export function checkShardedLoad(ctx: ResolveContext, descriptor: ModelDescriptor, request: LoadSettings): void {
  const { saved, own, merged } = layersOf(ctx, descriptor, request);
  resolveSpeculative(descriptor, ctx.catalog, { merged, own, fromApi: layerLoadSettings(saved, request) }, true);
}

/**
 * The settings a model loads with, most specific first: this load request, the model's saved
 * defaults, config.json, server settings, then the model's own metadata.
 */
export async function resolveLoad(ctx: ResolveContext, engine: Engine, descriptor: ModelDescriptor, request: LoadSettings = {}, placement?: Placement): Promise<ModelLoad> {
  const base = ctx.settings.load;
  const { saved, own, merged: o } = layersOf(ctx, descriptor, request);
  const explicitContext = own.contextLength;
  checkModelFile(descriptor);
  const declared = (await engine.inspect(descriptor)).declaredContextLength;
  const requested = o.contextLength;
  const speculative = resolveSpeculative(descriptor, ctx.catalog, { merged: o, own, fromApi: layerLoadSettings(saved, request) }, placement !== undefined);
  const resolved: ModelLoad = {
    contextLength: 0,
    parallel: parallelFor(descriptor, speculative, own, o.parallel ?? base.parallel),
    // 0 at any layer means "the server's default".
    threads: o.threads || base.threads,
    gpuLayers: o.gpuLayers,
    flashAttention: o.flashAttention,
    speculative,
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

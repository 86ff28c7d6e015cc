import type { ModelStatus } from "../scheduler/scheduler.ts";

/** What every model listing says about a model, in the API's snake_case. */
export function modelFacts(s: ModelStatus) {
  return {
    format: s.descriptor.format,
    state: s.state,
    architecture: s.info?.architecture ?? null,
    quantization: s.info?.quantization ?? null,
    size_bytes: s.info?.sizeBytes ?? null,
    max_context_length: s.info?.declaredContextLength ?? null,
    loaded_context_length: s.loadedContextLength ?? null,
    // Sharded across nodes: the nodes by rank, as the coordinator names them ("local" is the coordinator).
    ...(s.options?.distributed ? { nodes: s.options.distributed.nodes } : {}),
    ...(s.infoError ? { error: s.infoError } : {}),
  };
}

/** A model with its runtime state, for the admin API. */
export function modelStatusJson(s: ModelStatus, now = Date.now()) {
  const memory = s.memory ? s.memory.modelBytes + s.memory.contextBytes : null;
  return {
    id: s.descriptor.id,
    path: s.descriptor.path,
    ...modelFacts(s),
    parallel: s.options?.parallel ?? null,
    threads: s.options?.threads ?? null,
    flash_attention: s.flashAttention ?? null,
    speculative: s.speculative
      ? { mode: s.speculative.mode, draft: s.speculative.draft ?? null, draft_n: s.speculative.draftTokens, draft_n_accepted: s.speculative.draftAcceptedTokens }
      : null,
    memory_bytes: memory,
    ...(s.options?.distributed
      ? { rank: s.options.distributed.rank, of: s.options.distributed.size, coordinator: s.options.distributed.coordinator, group: s.options.distributed.group }
      : {}),
    active_requests: s.running,
    queued_requests: s.queued,
    idle_seconds: s.lastUsed !== undefined && s.running === 0 ? Math.round((now - s.lastUsed) / 1000) : null,
    loaded_at: s.loadedAt ? new Date(s.loadedAt).toISOString() : null,
    ttl_seconds: s.ttlSeconds ?? null,
    expires_at: s.ttlSeconds && s.lastUsed !== undefined ? new Date(s.lastUsed + s.ttlSeconds * 1000).toISOString() : null,
  };
}

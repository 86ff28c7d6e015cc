import type { StoredProbe } from "./service.ts";

/** How a probe result appears next to a model in /v1/models and the admin API. */
export function probeFields(p: StoredProbe | undefined) {
  return {
    tested_context_length: p ? p.testedContext : null,
    tested_at: p ? new Date(p.testedAt).toISOString() : null,
    tested_engine: p?.engineVersion ?? null,
    tested_stale: p ? p.stale : null,
    tested_reason: p?.reason ?? null,
    tested_memory_bytes: p?.memoryBytes ?? null,
  };
}

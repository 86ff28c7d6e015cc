import { Elysia } from "elysia";
import type { EventBus } from "../../events/bus.ts";
import type { Metrics } from "../../metrics/service.ts";
import type { Scheduler } from "../../scheduler/scheduler.ts";

/**
 * `/admin/v1/activity`: what each model is doing now (from the scheduler), what it has done since
 * the start (the /metrics counters, so a client takes tokens/s from two reads), and recent failures.
 */
export function adminActivityRoutes(deps: { scheduler: Scheduler; metrics: Metrics; events: EventBus }) {
  // Failures published on the bus are kept next to the failed requests the metrics observer records.
  deps.events.subscribe((e) => deps.metrics.errors.noteEvent(e));
  return new Elysia({ prefix: "/admin/v1" })
    .get("/activity", async () => {
      const totals = await deps.metrics.totals();
      return {
        time: new Date().toISOString(),
        memory_budget_bytes: deps.scheduler.memoryBudget,
        models: deps.scheduler.occupancy().map((m) => {
          const t = totals.get(m.id);
          return {
            id: m.id, engine: m.engine, loaded: m.loaded, memory_bytes: m.loaded ? m.memoryBytes : null,
            active_requests: m.running, queued_requests: m.queued,
            requests_total: t?.requests ?? 0, prompt_tokens_total: t?.promptTokens ?? 0, generated_tokens_total: t?.generatedTokens ?? 0,
          };
        }),
        recent_errors: deps.metrics.errors.list(),
      };
    }, {
      detail: {
        summary: "Live activity: active and queued requests and token totals per model, recent errors",
        description: "Token and request totals count since the server started (the same counters as /metrics); take two reads to get tokens per second. recent_errors holds the last 50 failed requests, loads, downloads and probes, newest first.",
        tags: ["Admin"],
      },
    });
}

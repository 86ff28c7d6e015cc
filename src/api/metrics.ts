import { Elysia } from "elysia";
import type { Metrics } from "../metrics/service.ts";

/** The path Prometheus scrapes; it needs an admin key once keys exist (see app.ts). */
export const METRICS_PATH = "/metrics";

/** `GET /metrics`: Prometheus text exposition format 0.0.4. */
export function metricsRoutes(metrics: Metrics) {
  return new Elysia().get(METRICS_PATH, async () => new Response(await metrics.render(), { headers: { "content-type": metrics.contentType } }), {
    detail: { summary: "Prometheus metrics (text exposition format 0.0.4; an admin key once keys exist)", tags: ["LMX"] },
  });
}

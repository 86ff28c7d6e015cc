import { Elysia } from "elysia";
import * as v from "valibot";
import { NotFoundError } from "../../errors.ts";
import type { ModelManager } from "../../models/manager.ts";
import type { ProbeJob, ProbeService } from "../../probe/service.ts";
import { probeFields } from "../../probe/fields.ts";
import { loadSettingsFromBody, ModelActionBody, PatchModelBody } from "../admin-schemas.ts";

export function probeJobJson(j: ProbeJob) {
  return {
    id: j.id, model: j.model, state: j.state, started_at: new Date(j.startedAt).toISOString(), error: j.error ?? null,
    steps: j.steps.map((s) => ({ context_length: s.contextLength, loads: s.loads, works: s.works, decided_by: s.decidedBy, detail: s.detail, ms: s.ms })),
    result: j.result ? { ...probeFields(j.result), decided_by: j.result.decidedBy, duration_ms: j.result.durationMs } : null,
  };
}


/** `/admin/v1/models/<id>[/load|/unload]`: ids may contain slashes (org/repo), so the tail is parsed here. */
function splitTail(tail: string): { id: string; action?: string } {
  const decoded = decodeURIComponent(tail);
  const m = /^(.+)\/(load|unload|probe)$/.exec(decoded);
  return m ? { id: m[1]!, action: m[2] } : { id: decoded };
}

export function adminModelRoutes(manager: ModelManager, probes: ProbeService) {
  return new Elysia({ prefix: "/admin/v1" })
    .get("/models", async () => ({ object: "list", data: await manager.list() }), {
      detail: { summary: "Every local model with its state and registry data", tags: ["Admin"] },
    })
    .get("/ps", async () => ({ object: "list", ...(await manager.ps()) }), {
      detail: { summary: "Loaded models: memory, context, idle time, active requests", tags: ["Admin"] },
    })
    .get("/models/*", async ({ params }) => {
      const { id, action } = splitTail(params["*"]);
      if (action) throw new NotFoundError(`use POST for /${action}`);
      return manager.show(id);
    }, { detail: { summary: "One model, with GGUF metadata, files, defaults and load history", tags: ["Admin"] } })
    .post("/models/*", async ({ params, body, set }) => {
      const { id, action } = splitTail(params["*"]);
      if (action === "load") return manager.load(id, loadSettingsFromBody(body ?? {}), body?.save ?? false);
      if (action === "unload") return manager.unload(id);
      if (action === "probe") {
        set.status = 202;
        const b = body ?? {};
        return probeJobJson(probes.start(id, { max: b.max, min: b.min, budgetMinutes: b.budget_minutes }));
      }
      throw new NotFoundError("POST /admin/v1/models/{id}/load or /unload");
    }, {
      body: v.optional(ModelActionBody),
      detail: {
        summary: "Load (context_length, parallel, threads, gpu_layers, ttl, save), unload, or probe (max, min, budget_minutes) a model",
        description: "POST /admin/v1/models/{id}/load, /unload and /probe. Loading checks the memory budget first and evicts idle models if needed. Probing measures the model's real working context as an async job (202): follow it on /admin/v1/events or GET /admin/v1/probes/{job}.",
        tags: ["Admin"],
      },
    })
    .get("/probes", () => ({ object: "list", data: probes.list().map(probeJobJson) }), { detail: { summary: "Probe jobs of this server run", tags: ["Admin"] } })
    .get("/probes/:id", ({ params }) => probeJobJson(probes.get(params.id)), { detail: { summary: "One probe job with every step", tags: ["Admin"] } })
    .patch("/models/*", ({ params, body }) => manager.update(splitTail(params["*"]).id, {
      loadDefaults: body.load_defaults && loadSettingsFromBody(body.load_defaults), aliases: body.aliases,
    }), {
      body: PatchModelBody,
      detail: { summary: "Set a model's saved load defaults or aliases", tags: ["Admin"] },
    })
    .delete("/models/*", ({ params }) => manager.remove(splitTail(params["*"]).id), {
      detail: { summary: "Unload and delete a downloaded model (files LMX downloaded; imported models are only forgotten)", tags: ["Admin"] },
    });
}

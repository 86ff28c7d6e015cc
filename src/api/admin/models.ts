import { Elysia } from "elysia";
import * as v from "valibot";
import { InvalidRequestError, NotFoundError } from "../../errors.ts";
import type { ManagedModel, ManagedModelDetail, ModelManager } from "../../admin/model-manager.ts";
import type { Coordinator } from "../../distributed/coordinator.ts";
import type { PeerService } from "../../peers/service.ts";
import type { ProbeJob, ProbeService } from "../../probe/service.ts";
import { probeFields } from "../../probe/fields.ts";
import { modelStatusJson } from "../model-json.ts";
import { loadSettingsFromBody, ModelActionBody, PatchModelBody } from "./schemas.ts";

export function probeJobJson(j: ProbeJob) {
  return {
    id: j.id, model: j.model, state: j.state, started_at: new Date(j.startedAt).toISOString(), error: j.error ?? null,
    steps: j.steps.map((s) => ({ context_length: s.contextLength, loads: s.loads, works: s.works, decided_by: s.decidedBy, detail: s.detail, ms: s.ms })),
    result: j.result ? { ...probeFields(j.result), decided_by: j.result.decidedBy, duration_ms: j.result.durationMs } : null,
  };
}

function managedJson({ status, registered, probe }: ManagedModel) {
  return {
    ...modelStatusJson(status),
    ...probeFields(probe),
    source_repo: registered?.sourceRepo ?? null,
    revision: registered?.revision ?? null,
    origin: registered?.origin ?? "local",
    aliases: registered?.aliases ?? [],
    load_defaults: registered?.loadDefaults ?? {},
    has_chat_template: status.info?.hasChatTemplate ?? null,
    embedding_model: status.info?.isEmbeddingModel ?? null,
  };
}

function detailJson(m: ManagedModelDetail) {
  return {
    ...managedJson(m),
    files: m.registered?.files ?? [],
    history: m.history.map((h) => ({
      event: h.event, at: new Date(h.at).toISOString(), context_length: h.contextLength, memory_bytes: h.memoryBytes, duration_ms: h.durationMs, error: h.error,
    })),
  };
}

/** `/admin/v1/models/<id>[/load|/unload]`: ids may contain slashes (org/repo), so the tail is parsed here. */
function splitTail(tail: string): { id: string; action?: string } {
  const decoded = decodeURIComponent(tail);
  const m = /^(.+)\/(load|unload|probe)$/.exec(decoded);
  return m ? { id: m[1]!, action: m[2] } : { id: decoded };
}

/** `/admin/v1/models…`, `/admin/v1/ps` and `/admin/v1/probes…`. */
export function adminModelRoutes({ manager, probes, peers, coordinator }: { manager: ModelManager; probes: ProbeService; peers?: PeerService; coordinator?: Coordinator }) {
  return new Elysia({ prefix: "/admin/v1" })
    .get("/models", async () => ({ object: "list", data: (await manager.list()).map(managedJson) }), {
      detail: { summary: "Every local model with its state and registry data", tags: ["Admin"] },
    })
    .get("/ps", async () => {
      const { memoryBudget, memoryInUse, loaded } = await manager.ps();
      return { object: "list", memory_budget_bytes: memoryBudget, memory_in_use_bytes: memoryInUse, data: loaded.map((s) => modelStatusJson(s)) };
    }, {
      detail: { summary: "Loaded models: memory, context, idle time, active requests", tags: ["Admin"] },
    })
    .get("/models/*", async ({ params }) => {
      const { id, action } = splitTail(params["*"]);
      if (action) throw new NotFoundError(`use POST for /${action}`);
      return detailJson(await manager.show(id));
    }, { detail: { summary: "One model, with GGUF metadata, files, defaults and load history", tags: ["Admin"] } })
    .post("/models/*", async ({ params, body, set, request }) => {
      const { id, action } = splitTail(params["*"]);
      // A peer's model (PEER/model) is loaded or unloaded by that peer, answering as it would.
      if ((action === "load" || action === "unload") && peers) {
        const remote = await peers.forwardAdmin(id, action, body, request.signal);
        if (remote) {
          set.status = remote.status;
          return new Response(remote.body, { status: remote.status, headers: { ...remote.headers, "x-lmx-node": remote.node } });
        }
      }
      if (action === "load" && body?.nodes) {
        if (!coordinator) throw new NotFoundError("this server cannot shard models across nodes");
        if (body.save) throw new InvalidRequestError("save: settings of a load across nodes are not saved as defaults", "save");
        return modelStatusJson(await coordinator.load(id, body.nodes, loadSettingsFromBody(body)));
      }
      if (action === "load") return modelStatusJson(await manager.load(id, loadSettingsFromBody(body ?? {}), body?.save ?? false));
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
        summary: "Load (context_length, parallel, threads, gpu_layers, ttl, flash_attention, speculative, draft, save, nodes), unload, or probe (max, min, budget_minutes) a model",
        description: "POST /admin/v1/models/{id}/load, /unload and /probe. Loading checks the memory budget first and evicts idle models if needed. `nodes` (e.g. [\"local\", \"studio\"]) shards an MLX model across this node (rank 0, which serves it) and peer LMX nodes with mlx.distributed (docs/scaling.md). Probing measures the model's real working context as an async job (202): follow it on /admin/v1/events or GET /admin/v1/probes/{job}.",
        tags: ["Admin"],
      },
    })
    .get("/probes", () => ({ object: "list", data: probes.list().map(probeJobJson) }), { detail: { summary: "Probe jobs of this server run", tags: ["Admin"] } })
    .get("/probes/:id", ({ params }) => probeJobJson(probes.get(params.id)), { detail: { summary: "One probe job with every step", tags: ["Admin"] } })
    .patch("/models/*", async ({ params, body }) => detailJson(await manager.update(splitTail(params["*"]).id, {
      loadDefaults: body.load_defaults && loadSettingsFromBody(body.load_defaults), aliases: body.aliases,
    })), {
      body: PatchModelBody,
      detail: { summary: "Set a model's saved load defaults or aliases", tags: ["Admin"] },
    })
    .delete("/models/*", async ({ params }) => {
      const { id, filesDeleted } = await manager.remove(splitTail(params["*"]).id);
      return { id, deleted: true, files_deleted: filesDeleted };
    }, {
      detail: { summary: "Unload and delete a downloaded model (files LMX downloaded; imported models are only forgotten)", tags: ["Admin"] },
    });
}

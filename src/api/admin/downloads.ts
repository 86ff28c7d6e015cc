import { Elysia } from "elysia";
import type { DownloadJob, DownloadJobs } from "../../downloads/jobs.ts";
import { searchModels } from "../../hub/search.ts";
import type { Scheduler } from "../../scheduler/scheduler.ts";
import type { HubSettings } from "../../downloads/hub-executor.ts";
import { DownloadBody, SearchQuery } from "./schemas.ts";

function jobJson(j: DownloadJob) {
  return {
    id: j.id, model: j.spec, repo: j.repo, revision: j.revision, state: j.state,
    files: j.files, bytes_done: j.bytesDone, bytes_total: j.bytesTotal, note: j.note, error: j.error, model_id: j.modelId,
    created_at: new Date(j.createdAt).toISOString(), updated_at: new Date(j.updatedAt).toISOString(),
  };
}

/** `/admin/v1/downloads…` and `/admin/v1/hub/search`. */
export function adminDownloadRoutes({ downloads: jobs, hub, scheduler }: { downloads: DownloadJobs; hub: HubSettings; scheduler: Pick<Scheduler, "memoryBudget"> }) {
  return new Elysia({ prefix: "/admin/v1" })
    .post("/downloads", ({ body, set }) => {
      set.status = 202;
      return jobJson(jobs.create(body.model, body.revision));
    }, {
      body: DownloadBody,
      detail: { summary: "Start a download job (org/repo, org/repo:QUANT or org/repo:file.gguf); progress on /admin/v1/events", tags: ["Admin"] },
    })
    .get("/downloads", () => ({ object: "list", data: jobs.list().map(jobJson) }), { detail: { summary: "Download jobs, newest first", tags: ["Admin"] } })
    .get("/downloads/:id", ({ params }) => jobJson(jobs.get(params.id)), { detail: { summary: "One download job", tags: ["Admin"] } })
    .delete("/downloads/:id", ({ params }) => jobJson(jobs.cancel(params.id)), { detail: { summary: "Cancel a download (the partial file is kept for a later resume)", tags: ["Admin"] } })
    .get("/hub/search", ({ query }) => searchModels({ query: query.q, limit: query.limit, hubUrl: hub.hubUrl, token: hub.token, memoryBytes: scheduler.memoryBudget })
      .then((data) => ({ object: "list", data })), {
      query: SearchQuery,
      detail: { summary: "Search GGUF and MLX repos on the hub: files, sizes, quants and whether each fits this machine", tags: ["Admin"] },
    });
}

import { Elysia } from "elysia";
import type { EngineBuildJob, EngineBuilds } from "../../update/engine-build/jobs.ts";
import { resolveBuildRequest } from "../../update/engine-build/request.ts";
import { EngineBuildBody } from "./schemas.ts";

function jobJson(j: EngineBuildJob) {
  return {
    id: j.id, ref: j.ref, llama_repo: j.repo, native: j.native, state: j.state, phase: j.phase, percent: j.percent,
    version: j.version, commit: j.commit, log: j.logPath, error: j.error,
    created_at: new Date(j.createdAt).toISOString(), updated_at: new Date(j.updatedAt).toISOString(),
  };
}

/** `/admin/v1/engines/builds…`: `lmx engine build` as jobs, progress on /admin/v1/events. */
export function adminEngineBuildRoutes({ engineBuilds: { jobs, llamaRepo, knownModels } }: { engineBuilds: EngineBuilds }) {
  return new Elysia({ prefix: "/admin/v1/engines" })
    .post("/builds", ({ body, set }) => {
      const build = resolveBuildRequest({ ref: body.ref, repo: body.llama_repo ?? llamaRepo, verifyModel: body.verify_model, native: body.native }, knownModels());
      set.status = 202;
      return jobJson(jobs.create(build));
    }, {
      body: EngineBuildBody,
      detail: {
        summary: "Build a llama.cpp engine from a release tag, commit, branch or pr/NUMBER; it is verified and registered, not selected (engine_build.* events)",
        tags: ["Admin"],
      },
    })
    .get("/builds", () => ({ object: "list", data: jobs.list().map(jobJson) }), { detail: { summary: "Engine builds, newest first", tags: ["Admin"] } })
    .get("/builds/:id", ({ params }) => jobJson(jobs.get(params.id)), { detail: { summary: "One engine build", tags: ["Admin"] } })
    .delete("/builds/:id", ({ params }) => jobJson(jobs.cancel(params.id)), { detail: { summary: "Cancel an engine build (nothing is registered)", tags: ["Admin"] } });
}

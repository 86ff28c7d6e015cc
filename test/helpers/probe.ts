// Drives a context probe through the admin API the way a bot would: start the job, poll it.

import { expect } from "bun:test";
import type { TestServer } from "./server.ts";

export type ProbeJob = {
  id: string; state: string; error: string | null;
  steps: { context_length: number; loads: boolean; works: boolean; decided_by: string | null; detail: string }[];
  result: { tested_context_length: number; tested_reason: string; decided_by: string | null; tested_engine: string; tested_memory_bytes: number | null; duration_ms: number } | null;
};

export async function probe(srv: TestServer, model: string, body: object): Promise<ProbeJob> {
  const res = await srv.request(`/admin/v1/models/${model}/probe`, { method: "POST", json: body });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as ProbeJob;
  for (;;) {
    const job = (await (await srv.request(`/admin/v1/probes/${id}`)).json()) as ProbeJob;
    if (job.state !== "running") return job;
    await Bun.sleep(100);
  }
}

export type ModelRow = {
  id: string; max_context_length: number; tested_context_length: number | null; tested_reason: string | null;
  tested_stale: boolean | null; tested_engine: string | null; tested_at: string | null; loaded_context_length?: number | null;
};

export const listModels = async (srv: TestServer) => ((await (await srv.request("/v1/models")).json()) as { data: ModelRow[] }).data;

import { Elysia } from "elysia";
import { freemem, totalmem, platform, arch, release } from "node:os";
import { engineBundleInfo } from "../../engines/llama/loader.ts";
import type { EventBus } from "../../events/bus.ts";
import type { Scheduler } from "../../scheduler/scheduler.ts";
import type { Security } from "../security.ts";
import { cpuInfo } from "../../util/cpu.ts";
import { VERSION } from "../../version.ts";

function accelerator(): string {
  if (platform() === "darwin" && arch() === "arm64") return "metal";
  return "none";
}

/** `/admin/v1/system` and `/admin/v1/events`. */
export function adminSystemRoutes(deps: { scheduler: Scheduler; events: EventBus; home: string; security: Pick<Security, "exposure"> }) {
  return new Elysia({ prefix: "/admin/v1" })
    .get("/system", () => {
      const cpu = cpuInfo();
      const engine = engineBundleInfo(deps.home);
      return {
        lmx_version: VERSION,
        os: { platform: platform(), arch: arch(), release: release() },
        cpu: {
          model: cpu.model, logical_cores: cpu.logicalCores, physical_cores: cpu.physicalCores,
          performance_cores: cpu.performanceCores, available_cores: cpu.availableCores, default_threads: cpu.defaultThreads,
        },
        memory: {
          total_bytes: totalmem(), free_bytes: freemem(),
          budget_bytes: deps.scheduler.memoryBudget, in_use_by_models_bytes: deps.scheduler.memoryInUse(),
        },
        accelerator: accelerator(),
        engines: [{ name: "llama.cpp", format: "gguf", node_llama_cpp: engine.nodeLlamaCppVersion, platform: engine.platform, source: engine.source, path: engine.path ?? null }],
        home: deps.home,
        server: deps.security.exposure(),
      };
    }, { detail: { summary: "OS, CPU, memory, accelerator, engine versions, and how the server is exposed (bind address, CORS, auth)", tags: ["Admin"] } })
    .get("/events", ({ request }) => {
      const encoder = new TextEncoder();
      let unsubscribe = () => {};
      let heartbeat: ReturnType<typeof setInterval> | undefined;
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(encoder.encode(": lmx events\n\n"));
          unsubscribe = deps.events.subscribe((e) => {
            try {
              c.enqueue(encoder.encode(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`));
            } catch {
              unsubscribe();
            }
          });
          // Comments keep proxies and idle timeouts from closing a quiet stream.
          heartbeat = setInterval(() => {
            try { c.enqueue(encoder.encode(": ping\n\n")); } catch { /* closed */ }
          }, 15_000);
          request.signal.addEventListener("abort", () => {
            unsubscribe();
            clearInterval(heartbeat);
            try { c.close(); } catch { /* already closed */ }
          }, { once: true });
        },
        cancel() {
          unsubscribe();
          clearInterval(heartbeat);
        },
      });
      return new Response(stream, { headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" } });
    }, { detail: { summary: "Server-Sent Events: downloads, loads, unloads, evictions, errors", tags: ["Admin"] } });
}

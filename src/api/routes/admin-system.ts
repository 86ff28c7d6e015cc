import { Elysia } from "elysia";
import { freemem, totalmem, platform, arch, release } from "node:os";
import { engineBundleInfo } from "../../engines/llama/loader.ts";
import type { EventBus } from "../../events/bus.ts";
import type { KeyStore } from "../../auth/keys.ts";
import type { Scheduler } from "../../scheduler/scheduler.ts";
import { cpuInfo } from "../../util/cpu.ts";
import { VERSION } from "../../version.ts";
import { KeyBody } from "../admin-schemas.ts";

function accelerator(): string {
  if (platform() === "darwin" && arch() === "arm64") return "metal";
  return "none";
}

export function adminSystemRoutes(deps: { scheduler: Scheduler; events: EventBus; keys: KeyStore; home: string }) {
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
      };
    }, { detail: { summary: "OS, CPU, memory, accelerator and engine versions", tags: ["Admin"] } })
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
    }, { detail: { summary: "Server-Sent Events: downloads, loads, unloads, evictions, errors", tags: ["Admin"] } })
    .get("/keys", () => ({ object: "list", data: deps.keys.list() }), { detail: { summary: "API keys (never the keys themselves)", tags: ["Admin"] } })
    .post("/keys", ({ body }) => {
      const { key, info, admin } = deps.keys.create(body.scope, body.name);
      if (admin) {
        return { ...info, key, admin_key: { ...admin.info, key: admin.key },
          note: "This first key turns authentication on, so an admin key was created with it for the /admin routes. Store both now: they are not shown again." };
      }
      return { ...info, key, note: "Store this key now: it is not shown again." };
    }, { body: KeyBody, detail: { summary: "Create an API key (shown once)", tags: ["Admin"] } })
    .delete("/keys/:ref", ({ params }) => deps.keys.revoke(params.ref), { detail: { summary: "Revoke a key by id, name or prefix", tags: ["Admin"] } });
}

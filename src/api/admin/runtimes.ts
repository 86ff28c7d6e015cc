import { Elysia } from "elysia";
import * as v from "valibot";
import { errorMessage, NotFoundError } from "../../errors.ts";
import type { InstallOptions, InstallProgress, MlxRuntime, RuntimeStatus } from "../../runtimes/mlx.ts";
import { errorBody } from "../errors.ts";

const InstallBody = v.object({
  /** Base interpreter for the new environment (default: uv's choice; a uv-installed CPython on macOS). */
  python: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(4096))),
});

const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : null);

/** A runtime's status in the API's snake_case. */
function runtimeJson(s: RuntimeStatus) {
  return {
    name: s.name, pinned: s.pinned, worker: s.worker, install_command: s.installCommand,
    installed: s.installed, source: s.source, path: s.path, python: s.python, packages: s.packages, up_to_date: s.upToDate, device: s.device,
    installed_at: iso(s.installedAt), updated_at: iso(s.updatedAt), verified_at: iso(s.verifiedAt),
  };
}

function runtimeName(name: string): "mlx" {
  if (name !== "mlx") throw new NotFoundError(`unknown runtime '${name}'; LMX manages: mlx`);
  return name;
}

/**
 * Runs an install or update. With `Accept: application/x-ndjson` the answer streams one JSON line
 * per progress step and ends with {"type":"result","runtime":…} or {"type":"error","error":…};
 * otherwise it is the final status once done.
 */
function operation(request: Request, run: (opts: InstallOptions) => Promise<RuntimeStatus>, body: v.InferOutput<typeof InstallBody>) {
  if (!(request.headers.get("accept") ?? "").includes("application/x-ndjson")) return run({ python: body.python }).then(runtimeJson);
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    async start(c) {
      const send = (x: unknown) => {
        try { c.enqueue(encoder.encode(JSON.stringify(x) + "\n")); } catch { /* client went away; the install goes on */ }
      };
      try {
        const status = await run({ python: body.python, onProgress: (p: InstallProgress) => send({ type: "progress", ...p }) });
        send({ type: "result", runtime: runtimeJson(status) });
      } catch (err) {
        send({ type: "error", ...errorBody(err), message: errorMessage(err) });
      }
      try { c.close(); } catch { /* already closed */ }
    },
  });
  return new Response(stream, { headers: { "content-type": "application/x-ndjson; charset=utf-8", "cache-control": "no-cache" } });
}

/** `/admin/v1/runtimes…`. */
export function adminRuntimeRoutes({ mlx }: { mlx: MlxRuntime }) {
  return new Elysia({ prefix: "/admin/v1" })
    .get("/runtimes", () => ({ object: "list", data: [runtimeJson(mlx.status())] }), {
      detail: { summary: "Runtimes LMX manages (the MLX Python environment): installed versions, pins, paths", tags: ["Admin"] },
    })
    .get("/runtimes/:name", ({ params }) => { runtimeName(params.name); return runtimeJson(mlx.status()); }, {
      detail: { summary: "One runtime's status", tags: ["Admin"] },
    })
    .post("/runtimes/:name/install", ({ params, body, request }) => { runtimeName(params.name); return operation(request, (o) => mlx.install(o), body ?? {}); }, {
      body: v.optional(InstallBody),
      detail: {
        summary: "Install the runtime (isolated environment with the pinned mlx and mlx-lm), check it and record it",
        description: "Does nothing if it is installed already. Send 'Accept: application/x-ndjson' for streamed progress lines.",
        tags: ["Admin"],
      },
    })
    .post("/runtimes/:name/update", ({ params, body, request }) => { runtimeName(params.name); return operation(request, (o) => mlx.update(o), body ?? {}); }, {
      body: v.optional(InstallBody),
      detail: {
        summary: "Reinstall the runtime into a new folder and switch to it once it passes its check",
        description: "A failed update leaves the previous runtime in use. Send 'Accept: application/x-ndjson' for streamed progress lines.",
        tags: ["Admin"],
      },
    })
    .delete("/runtimes/:name", ({ params }) => { runtimeName(params.name); return mlx.remove(); }, {
      detail: { summary: "Remove the runtime (refused with 409 while MLX models are loaded)", tags: ["Admin"] },
    });
}

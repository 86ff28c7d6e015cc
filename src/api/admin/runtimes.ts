import { Elysia } from "elysia";
import * as v from "valibot";
import { errorMessage, NotFoundError } from "../../errors.ts";
import type { InstallOptions, InstallProgress, MlxRuntime, RuntimeStatus } from "../../runtimes/mlx.ts";
import { errorBody } from "../errors.ts";
import { parsePackageSpec } from "../../runtimes/package-spec.ts";
import type { MlxChoice } from "../../runtimes/versions.ts";

const InstallBody = v.object({
  /** Base interpreter for the new environment (default: uv's choice; a uv-installed CPython on macOS). */
  python: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(4096))),
  /** mlx-lm to install instead of the pin: a version ("0.32.1") or git+https://HOST/REPO[@REF] (git+file:// too). */
  mlx_lm: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(2300))),
  /** mlx to install instead of the pin: a version. */
  mlx: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(40))),
});
type InstallBody = v.InferOutput<typeof InstallBody>;

/** The body's choice of versions, checked before anything reaches uv. */
function choiceOf(body: InstallBody): MlxChoice {
  return {
    mlxLm: body.mlx_lm === undefined ? undefined : parsePackageSpec(body.mlx_lm, "mlx_lm", true),
    mlx: body.mlx === undefined ? undefined : parsePackageSpec(body.mlx, "mlx", false),
  };
}

const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : null);

/** A runtime's status in the API's snake_case. */
function runtimeJson(s: RuntimeStatus) {
  return {
    name: s.name, pinned: s.pinned, worker: s.worker, install_command: s.installCommand,
    installed: s.installed, source: s.source, path: s.path, python: s.python, packages: s.packages, requested: s.requested, up_to_date: s.upToDate, device: s.device,
    installed_at: iso(s.installedAt), updated_at: iso(s.updatedAt), verified_at: iso(s.verifiedAt), previous: s.previous,
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
function operation(request: Request, run: (opts: InstallOptions) => Promise<RuntimeStatus>, body: InstallBody) {
  const choice = choiceOf(body);
  if (!(request.headers.get("accept") ?? "").includes("application/x-ndjson")) return run({ python: body.python, choice }).then(runtimeJson);
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    async start(c) {
      const send = (x: unknown) => {
        try { c.enqueue(encoder.encode(JSON.stringify(x) + "\n")); } catch { /* client went away; the install goes on */ }
      };
      try {
        const status = await run({ python: body.python, choice, onProgress: (p: InstallProgress) => send({ type: "progress", ...p }) });
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
        description: "Without mlx_lm / mlx it installs this lmx's pins; with them, the versions asked for (mlx_lm may be git+URL@REF, " +
          "so an architecture merged in mlx-lm is usable at once). A failed update leaves the previous runtime in use; the previous one " +
          "is kept for a rollback. Send 'Accept: application/x-ndjson' for streamed progress lines.",
        tags: ["Admin"],
      },
    })
    .post("/runtimes/:name/rollback", ({ params, request }) => { runtimeName(params.name); return operation(request, (o) => mlx.rollback(o), {}); }, {
      detail: {
        summary: "Switch back to the previous runtime (kept after each update), once it passes its check again",
        description: "Models already running keep their worker; new loads use the restored runtime. Send 'Accept: application/x-ndjson' for streamed progress lines.",
        tags: ["Admin"],
      },
    })
    .delete("/runtimes/:name", ({ params }) => { runtimeName(params.name); return mlx.remove(); }, {
      detail: { summary: "Remove the runtime (refused with 409 while MLX models are loaded)", tags: ["Admin"] },
    });
}

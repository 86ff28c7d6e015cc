import { Elysia } from "elysia";
import { errorMessage, LmxError, UpdateError } from "../../errors.ts";
import { currentEngineVersion, loadedEngine, selectedEngine } from "../../engines/llama/loader.ts";
import { type EngineRow, listEngines, updateToEngine, useEngine } from "../../update/engines.ts";
import { fetchManifest, readCachedManifest, updateBaseUrl } from "../../update/manifest.ts";
import { BUILTIN_PUBLIC_KEYS } from "../../update/signing.ts";
import { EngineUpdateBody, EngineUseBody } from "./schemas.ts";

/** Installing or switching engines refused or failed; whatever was selected stays selected. */
class EngineChangeError extends LmxError {
  constructor(message: string) {
    super(message, 409, "invalid_request_error", "engine_update_failed");
  }
}

/** UpdateError says what went wrong in words a user can act on; the API keeps them. */
async function changing<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof UpdateError) throw new EngineChangeError(errorMessage(err));
    throw err;
  }
}

function rowJson(r: EngineRow) {
  return {
    version: r.version, llama_cpp: r.llamaCpp ?? null, architectures: r.architectures ?? null, installed: r.installed, embedded: r.embedded,
    selected: r.selected, compatible: r.compatible, available: r.available, build: r.build ?? null,
  };
}

const SWITCH_NOTE = "a running server switches at its next model load (it restarts itself once running requests finish)";

/**
 * `/admin/v1/engines`, `/engines/update`, `/engines/use`: what `lmx engine list | update | use` do,
 * for bots and the dashboard. The selection is a file the server reads at its next model load.
 */
export function adminEngineRoutes({ home }: { home: string }) {
  return new Elysia({ prefix: "/admin/v1/engines" })
    .get("", async ({ query }) => {
      const check = query.check === "true" || query.check === "1";
      const verified = await changing(async () => (check ? await fetchManifest(updateBaseUrl(), BUILTIN_PUBLIC_KEYS, home) : await readCachedManifest(home, BUILTIN_PUBLIC_KEYS)));
      return {
        object: "list", selected: selectedEngine(home).nodeLlamaCppVersion, active: currentEngineVersion(home), loaded: loadedEngine() ?? null,
        manifest_updated: verified?.manifest.updated ?? null, data: listEngines(home, verified?.manifest).map(rowJson),
      };
    }, {
      detail: {
        summary: "llama.cpp engines: embedded, installed, built here and (with a fetched manifest) published; ?check=true fetches the release manifest now",
        tags: ["Admin"],
      },
    })
    .post("/update", async ({ body }) => {
      const r = await changing(() => updateToEngine(home, updateBaseUrl(), body?.version));
      return { version: r.version, previous: r.previous, llama_cpp: r.llamaCpp, changed: r.previous !== r.version, note: SWITCH_NOTE };
    }, {
      body: EngineUpdateBody,
      detail: {
        summary: "Download a published engine (default: the newest compatible), verify it against the signed manifest, and select it",
        description: "409 engine_update_failed with the reason (no update URL, signature, checksum, incompatible, running from source); the selection is unchanged then.",
        tags: ["Admin"],
      },
    })
    .post("/use", async ({ body }) => {
      const previous = selectedEngine(home).nodeLlamaCppVersion;
      await changing(() => useEngine(home, body.version));
      return { version: body.version, previous, changed: previous !== body.version, note: SWITCH_NOTE };
    }, {
      body: EngineUseBody,
      detail: { summary: "Select an installed, built or the embedded engine (as `lmx engine use`)", tags: ["Admin"] },
    });
}

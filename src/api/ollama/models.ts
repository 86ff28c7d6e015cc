// Ollama's model listing and management: /api/tags, /api/ps, /api/show, /api/delete, /api/copy.
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { Elysia } from "elysia";
import type { ManagedModel, ModelManager } from "../../admin/model-manager.ts";
import { InvalidRequestError, LmxError } from "../../errors.ts";
import type { ListedModel } from "../../peers/naming.ts";
import type { PeerService } from "../../peers/service.ts";
import { sampledDigest } from "../../probe/digest.ts";
import type { ModelStatus, Scheduler } from "../../scheduler/scheduler.ts";
import { ollamaError } from "./errors.ts";
import { loadedOnPeers, showOnPeer } from "./peers.ts";
import { modelName } from "./requests.ts";
import { CopyBody, ModelRef, PsQuery } from "./schemas.ts";

/** What Ollama clients show for "never expires" (a model kept loaded for ever). */
const NEVER = "9999-12-31T23:59:59Z";
/** A peer does not say when its model files changed. */
const UNKNOWN_TIME = "1970-01-01T00:00:00Z";
const ALIAS = /^[\w.:/-]{1,200}$/;

/**
 * A model's digest: the sha256 the hub gave for a downloaded file, otherwise the sampled digest
 * LMX keys probe results by (size and 32 samples of the file: hashing whole files of many GB on
 * every listing is not an option). It changes whenever the file does.
 */
function digestOf(m: ManagedModel): string {
  const sha = m.registered?.path === m.status.descriptor.path ? m.registered.files[0]?.sha256 : undefined;
  if (sha) return sha;
  try {
    return sampledDigest(m.status.descriptor.path).replace(/^sampled:/, "");
  } catch {
    return createHash("sha256").update(m.status.descriptor.path).digest("hex");
  }
}

function modifiedAt(m: ManagedModel): string {
  if (m.registered) return new Date(m.registered.updatedAt).toISOString();
  try {
    return statSync(m.status.descriptor.path).mtime.toISOString();
  } catch {
    return new Date(0).toISOString();
  }
}

function details(s: ModelStatus) {
  const family = s.info?.architecture ?? "";
  return {
    parent_model: "",
    format: s.descriptor.format,
    family,
    families: family ? [family] : null,
    parameter_size: s.info?.sizeLabel ?? "",
    quantization_level: s.info?.quantization ?? "",
  };
}

function summary(m: ManagedModel) {
  return {
    name: m.status.descriptor.id,
    model: m.status.descriptor.id,
    modified_at: modifiedAt(m),
    size: m.status.info?.sizeBytes ?? 0,
    digest: digestOf(m),
    details: details(m.status),
  };
}

/**
 * A peer's model as Ollama lists a model served elsewhere (its cloud models carry `remote_host`):
 * nothing is on this disk, so no size, digest or details are claimed.
 */
function peerSummary(m: ListedModel) {
  return {
    name: m.id, model: m.id, modified_at: UNKNOWN_TIME, size: 0, digest: "",
    details: { parent_model: "", format: "", family: "", families: null, parameter_size: "", quantization_level: "" },
    remote_model: m.model, remote_host: m.peer, node: m.peer,
  };
}

/** What the model can do, by Ollama's names: tools and thinking as its chat template shows them. */
function capabilities(s: ModelStatus): string[] {
  if (s.info?.isEmbeddingModel) return ["embedding"];
  const template = s.info?.chatTemplate ?? "";
  const out = ["completion"];
  if (/\btools\b/.test(template)) out.push("tools");
  if (/<think>|enable_thinking|reasoning_content/.test(template)) out.push("thinking");
  return out;
}

function refName(body: ModelRef): string {
  const name = body.model ?? body.name;
  if (!name) throw new InvalidRequestError("model is required", "model");
  return name;
}

export function modelRoutes(manager: ModelManager, scheduler: Scheduler, peers?: PeerService) {
  /** A model by the name a client used, or Ollama's not-found error. */
  const find = async (name: string) => {
    try {
      return await manager.show(modelName(name));
    } catch (err) {
      throw ollamaError(err, name);
    }
  };
  return new Elysia()
    .get("/api/tags", async () => {
      const local = await manager.list();
      const remote = peers?.listed(new Set(local.map((m) => m.status.descriptor.id))).filter((m) => m.available).map(peerSummary) ?? [];
      return { models: [...local.map(summary), ...remote] };
    }, {
      detail: {
        summary: "Local models (Ollama)", tags: ["Ollama"],
        description: "Every model LMX can serve, named by its LMX id, then the models of peers that are up (with `remote_host` and LMX's `node`); a request for one is proxied to its peer.",
      },
    })
    .get("/api/ps", async ({ query, request }) => {
      const { loaded } = await manager.ps();
      const managed = await Promise.all(loaded.map((s) => manager.show(s.descriptor.id)));
      const local = managed.map((m) => {
        const s = m.status;
        const expires = s.ttlSeconds && s.lastUsed !== undefined ? new Date(s.lastUsed + s.ttlSeconds * 1000).toISOString() : NEVER;
        return { ...summary(m), expires_at: expires, size: s.memory ? s.memory.modelBytes + s.memory.contextBytes : summary(m).size, size_vram: s.memory?.gpuBytes ?? 0, context_length: s.loadedContextLength ?? 0, node: "local" };
      });
      if (!peers || query.node === "local") return { models: local };
      const ids = new Set((await scheduler.list()).map((s) => s.descriptor.id));
      return { models: [...local, ...(await loadedOnPeers(peers, ids, request.signal))] };
    }, {
      query: PsQuery,
      detail: {
        summary: "Loaded models (Ollama)", tags: ["Ollama"],
        description: "size is the RAM the model holds, size_vram what it offloaded (0 on CPU); expires_at per its TTL. Then the models loaded on LMX peers that are up, under the ids that address them here, each with `node` (local ones: `local`); `?node=local` lists this server's own only.",
      },
    })
    .post("/api/show", async ({ body, request, set }) => {
      const name = refName(body);
      // A name only a peer serves: that peer's details (the first target of a route).
      const remote = peers?.plan(modelName(name))?.[0];
      if (peers && remote?.kind === "peer") return showOnPeer(peers, remote, name, body, request.signal, set);
      const m = await find(name);
      const s = m.status;
      const arch = s.info?.architecture ?? "unknown";
      // The context LMX measured works on this machine, where it probed; otherwise the declared one.
      const context = m.probe && !m.probe.stale && m.probe.testedContext > 0 ? m.probe.testedContext : s.info?.declaredContextLength;
      return {
        license: "",
        modelfile: "",
        parameters: "",
        template: s.info?.chatTemplate ?? "",
        details: details(s),
        model_info: { "general.architecture": arch, ...(context ? { [`${arch}.context_length`]: context } : {}) },
        capabilities: capabilities(s),
        modified_at: modifiedAt(m),
      };
    }, {
      body: ModelRef,
      detail: { summary: "Model details (Ollama)", tags: ["Ollama"], description: "details, model_info (<arch>.context_length is the tested context where LMX probed the model), the chat template and capabilities. For a model of a peer that is another LMX, that peer's answer (x-lmx-node names it); 501 for a peer that is not LMX." },
    })
    .delete("/api/delete", async ({ body }) => {
      const name = refName(body);
      const model = modelName(name);
      const m = await find(name);
      const registered = m.registered;
      // A name made by /api/copy is an alias: deleting it forgets the name, not the model.
      if (registered && registered.id !== model && registered.aliases.includes(model)) {
        await manager.update(registered.id, { aliases: registered.aliases.filter((a) => a !== model) });
      } else {
        await manager.remove(m.status.descriptor.id);
      }
      return new Response(null, { status: 200 });
    }, {
      body: ModelRef,
      detail: { summary: "Delete a model (Ollama)", tags: ["Ollama"], description: "Forgets a downloaded model and deletes its files; on a name made by /api/copy, forgets only that name. Files in the models directory are not LMX's to delete (400)." },
    })
    .post("/api/copy", async ({ body }) => {
      const source = await find(body.source);
      const destination = modelName(body.destination);
      if (!ALIAS.test(destination)) throw new InvalidRequestError("destination may use letters, digits and . _ : / - (at most 200)", "destination");
      const taken = await scheduler.get(destination).then((s) => s.descriptor.id, (err: unknown) => {
        if (err instanceof LmxError && err.status === 404) return undefined;
        throw err;
      });
      if (taken === source.status.descriptor.id) return new Response(null, { status: 200 });
      if (taken !== undefined) throw new InvalidRequestError(`'${destination}' already names the model '${taken}'`, "destination");
      if (!source.registered) {
        throw new InvalidRequestError(`'${source.status.descriptor.id}' is a file in the models directory, which has no aliases; give the name in config.json or copy the file`, "source");
      }
      await manager.update(source.registered.id, { aliases: [...source.registered.aliases, destination] });
      return new Response(null, { status: 200 });
    }, {
      body: CopyBody,
      detail: { summary: "Copy a model (Ollama): another name for it", tags: ["Ollama"], description: "Adds destination as an alias of a downloaded or imported model; no file is copied." },
    });
}

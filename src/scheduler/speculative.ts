// Which speculative decoding a load asks for, with its draft model resolved to a file. The draft
// is named by model id; a GGUF path is accepted only from the operator's own settings (serve flags,
// LMX_* env, config.json), never from an API body, which must not point the server at arbitrary files.
import { existsSync, statSync } from "node:fs";
import { basename, resolve } from "node:path";
import { type LoadSettings, type ResolvedSpeculative, speculativeMode } from "../config/load-settings.ts";
import type { ModelDescriptor } from "../engines/types.ts";
import { InvalidRequestError } from "../errors.ts";
import { validateGgufModel } from "../gguf/model.ts";
import { vocabularyMismatch } from "../gguf/vocab.ts";
import { mlxVocabularyMismatch } from "../engines/mlx/vocab.ts";
import type { ModelCatalog } from "../models/catalog.ts";

export interface SpeculativeLayers {
  /** Every layer merged, most specific last. */
  merged: LoadSettings;
  /** The layers set for this model (config.json, saved defaults, the load request). */
  own: LoadSettings;
  /** The layers an API caller controls (saved defaults, the load request). */
  fromApi: LoadSettings;
}

/** `sharded`: the load is one rank of a model split across nodes. */
export function resolveSpeculative(descriptor: ModelDescriptor, catalog: ModelCatalog, { merged, own, fromApi }: SpeculativeLayers, sharded = false): ResolvedSpeculative | undefined {
  if (descriptor.format === "mlx") return mlxSpeculative(descriptor, catalog, own, sharded);
  const mode = speculativeMode(merged);
  if (mode === "off") return undefined;
  if (mode === "lookup") return { mode };
  const name = merged.draft;
  if (name === undefined) throw new InvalidRequestError(`speculative "draft" on model '${descriptor.id}' needs a draft model: set draft to a model id`, "draft", "draft_model_missing");
  const draft = draftFile(name, catalog, fromApi.draft === name);
  checkVocabulary(descriptor, draft);
  return { mode, ...draft };
}

/**
 * An MLX model's own settings only: the server-wide ones serve GGUF models (whose drafts are GGUF,
 * which cannot draft for an MLX model). The draft is another MLX model, named by id, run in the
 * same worker by mlx-lm's speculative decoding.
 */
function mlxSpeculative(descriptor: ModelDescriptor, catalog: ModelCatalog, own: LoadSettings, sharded: boolean): ResolvedSpeculative | undefined {
  const mode = speculativeMode(own);
  if (mode === "off") return undefined;
  if (mode === "lookup") {
    throw new InvalidRequestError(`speculative "lookup" is not supported for MLX models ('${descriptor.id}'): mlx-lm has no prompt-lookup decoding; use "draft" with an MLX draft model, or off`,
      "speculative", "unsupported_parameter");
  }
  if (sharded) {
    throw new InvalidRequestError(`a model loaded across nodes cannot have a draft model ('${descriptor.id}'); load it on one node for speculative decoding, or set speculative to off`,
      "speculative", "unsupported_parameter");
  }
  const name = own.draft;
  if (name === undefined) throw new InvalidRequestError(`speculative "draft" on model '${descriptor.id}' needs a draft model: set draft to an MLX model id`, "draft", "draft_model_missing");
  const listed = catalog.get(name);
  if (!listed) throw new InvalidRequestError(`draft model '${name}' not found (an MLX model id from /v1/models)`, "draft", "model_not_found");
  if (listed.format !== "mlx") throw new InvalidRequestError(`draft model '${name}' is ${listed.format.toUpperCase()}; an MLX model needs an MLX draft`, "draft", "draft_model_mismatch");
  refuseMismatch(descriptor, listed.id, mlxVocabularyMismatch(descriptor.path, listed.path));
  return { mode, draftId: listed.id, draftPath: listed.path };
}

/**
 * The sequences a model runs at once. An MLX model with a draft runs one: mlx-lm's speculative
 * decoding has no batch. A larger `parallel` asked for that model is refused; the server-wide
 * default is not its to keep.
 */
export function parallelFor(descriptor: ModelDescriptor, speculative: ResolvedSpeculative | undefined, own: LoadSettings, parallel: number): number {
  if (descriptor.format !== "mlx" || speculative?.mode !== "draft") return parallel;
  if (own.parallel !== undefined && own.parallel > 1) {
    throw new InvalidRequestError(`an MLX model with a draft model serves one request at a time (mlx-lm's speculative decoding does not batch); set parallel to 1 or leave it unset for '${descriptor.id}'`,
      "parallel", "unsupported_parameter");
  }
  return 1;
}

function draftFile(name: string, catalog: ModelCatalog, fromApi: boolean): { draftId: string; draftPath: string } {
  const listed = catalog.get(name);
  if (listed) {
    if (listed.format !== "gguf") throw new InvalidRequestError(`draft model '${name}' is ${listed.format.toUpperCase()}; a GGUF model needs a GGUF draft`, "draft", "draft_model_mismatch");
    return { draftId: listed.id, draftPath: listed.path };
  }
  if (fromApi || !/\.gguf$/i.test(name)) throw new InvalidRequestError(`draft model '${name}' not found (a model id from /v1/models)`, "draft", "model_not_found");
  const path = resolve(name);
  if (!existsSync(path) || !statSync(path).isFile()) throw new InvalidRequestError(`draft model file ${path} does not exist`, "draft", "model_not_found");
  return { draftId: basename(path).replace(/\.gguf$/i, ""), draftPath: path };
}

/**
 * Refuses a draft whose token ids do not mean what the target's mean, before anything is unloaded
 * or loaded (a 400 naming both models; llama.cpp would only fail at the first generation, mlx-lm
 * at the load, after the model it replaces was unloaded).
 */
function checkVocabulary(target: ModelDescriptor, draft: { draftId: string; draftPath: string }): void {
  refuseMismatch(target, draft.draftId, vocabularyMismatch(validateGgufModel(target.path).header.metadata, validateGgufModel(draft.draftPath).header.metadata));
}

function refuseMismatch(target: ModelDescriptor, draftId: string, why: string | undefined): void {
  if (why === undefined) return;
  throw new InvalidRequestError(`draft model '${draftId}' cannot draft for '${target.id}': their vocabularies differ (${why}); a draft model must share the target's tokenizer`,
    "draft", "draft_vocabulary_mismatch");
}

/** Whether two loads decode the same way (a loaded model is reused only if so). */
export function sameSpeculative(a: ResolvedSpeculative | undefined, b: ResolvedSpeculative | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.mode === "lookup" || b.mode === "lookup") return a.mode === b.mode;
  return a.draftPath === b.draftPath;
}

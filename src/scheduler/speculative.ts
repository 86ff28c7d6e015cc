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
import type { ModelCatalog } from "../models/catalog.ts";

export interface SpeculativeLayers {
  /** Every layer merged, most specific last. */
  merged: LoadSettings;
  /** The layers set for this model (config.json, saved defaults, the load request). */
  own: LoadSettings;
  /** The layers an API caller controls (saved defaults, the load request). */
  fromApi: LoadSettings;
}

export function resolveSpeculative(descriptor: ModelDescriptor, catalog: ModelCatalog, { merged, own, fromApi }: SpeculativeLayers): ResolvedSpeculative | undefined {
  if (descriptor.format === "mlx") {
    // The server-wide setting serves GGUF models; asked for this MLX model, it is refused, not ignored.
    if (speculativeMode(own) !== "off") {
      throw new InvalidRequestError(`speculative decoding is not supported for MLX models ('${descriptor.id}'); set speculative to off or leave it unset for this model`, "speculative", "unsupported_parameter");
    }
    return undefined;
  }
  const mode = speculativeMode(merged);
  if (mode === "off") return undefined;
  if (mode === "lookup") return { mode };
  const name = merged.draft;
  if (name === undefined) throw new InvalidRequestError(`speculative "draft" on model '${descriptor.id}' needs a draft model: set draft to a model id`, "draft", "draft_model_missing");
  const draft = draftFile(name, catalog, fromApi.draft === name);
  checkVocabulary(descriptor, draft);
  return { mode, ...draft };
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
 * or loaded (a 400 naming both models; llama.cpp would only fail at the first generation).
 */
function checkVocabulary(target: ModelDescriptor, draft: { draftId: string; draftPath: string }): void {
  const why = vocabularyMismatch(validateGgufModel(target.path).header.metadata, validateGgufModel(draft.draftPath).header.metadata);
  if (why === undefined) return;
  throw new InvalidRequestError(`draft model '${draft.draftId}' cannot draft for '${target.id}': their vocabularies differ (${why}); a draft model must share the target's tokenizer`,
    "draft", "draft_vocabulary_mismatch");
}

/** Whether two loads decode the same way (a loaded model is reused only if so). */
export function sameSpeculative(a: ResolvedSpeculative | undefined, b: ResolvedSpeculative | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.mode === "lookup" || b.mode === "lookup") return a.mode === b.mode;
  return a.draftPath === b.draftPath;
}

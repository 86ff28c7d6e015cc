// Bounds on how a model is loaded, whoever asks (load request, saved defaults, config.json, flags):
// a load is cheap to request and expensive to carry out, so nonsense is refused before the engine
// sees it.
import { existsSync } from "node:fs";
import type { ModelDescriptor } from "../engines/types.ts";
import { InvalidRequestError, LmxError } from "../errors.ts";
import { cpuInfo } from "../util/cpu.ts";

/**
 * More compute threads than logical CPUs only contend for them (and llama.cpp spins waiting at
 * every barrier: 1024 threads stop the server answering). Twice the logical count still leaves
 * room for machines whose CPU count the process sees wrongly.
 */
export function maxThreads(): number {
  return Math.max(2, cpuInfo().logicalCores * 2);
}

export function checkThreads(threads: number, where: string): void {
  const max = maxThreads();
  if (threads > max) {
    throw new InvalidRequestError(`${where}: ${threads} threads is more than this machine can run (at most ${max}, twice its logical CPUs); 0 or no value picks the best count`, "threads", "threads_too_high");
  }
}

/** The model's file went away since it was listed (deleted, moved, a dangling link): a clear 404, not an ENOENT. */
export function checkModelFile(descriptor: ModelDescriptor): void {
  if (existsSync(descriptor.path)) return;
  throw new LmxError(`the file of model '${descriptor.id}' no longer exists at ${descriptor.path} (deleted or moved, or a link to a file that is gone). Restore the file, or remove the model: 'lmx rm ${descriptor.id}' for a pulled or imported model, otherwise delete it from the models folder.`,
    404, "invalid_request_error", "model_file_missing", "model");
}

/**
 * A context beyond the declared one allocates memory for positions the model was never trained on
 * and yields garbage there: an explicit request for one is refused (the server-wide default is
 * capped instead, so one --ctx serves models of different sizes).
 */
export function checkContext(descriptor: ModelDescriptor, contextLength: number, declared: number | undefined): void {
  if (declared === undefined || contextLength <= declared) return;
  throw new InvalidRequestError(`context_length ${contextLength} is larger than the ${declared} tokens model '${descriptor.id}' declares; ask for at most ${declared}`, "context_length", "context_too_large");
}

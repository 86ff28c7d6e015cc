// Typed errors. Each carries what the HTTP layer needs to answer in OpenAI's error shape; the
// mapping to a response happens once, in src/api/errors.ts.

export type ErrorType = "invalid_request_error" | "authentication_error" | "permission_error" | "not_found_error" | "server_error" | "overloaded_error";

export class LmxError extends Error {
  /** For 503s that pass: the HTTP layer sends it as Retry-After. */
  retryAfterSeconds: number | undefined;

  constructor(
    message: string,
    readonly status: number,
    readonly type: ErrorType,
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class InvalidRequestError extends LmxError {
  constructor(message: string, param: string | null = null, code: string | null = null) {
    super(message, 400, "invalid_request_error", code, param);
  }
}

export class ContextLengthExceededError extends LmxError {
  constructor(readonly needed: number, readonly available: number, detail: string, param = "messages") {
    super(
      `This model's maximum context length is ${available} tokens. However, ${detail}. Shorten the input.`,
      400, "invalid_request_error", "context_length_exceeded", param);
  }
}

export class ModelNotFoundError extends LmxError {
  /** `routedTo`: the model a route sent the name to, when that is what does not exist. */
  constructor(model: string, routedTo?: string) {
    const what = routedTo === undefined ? `The model '${model}' does not exist.` : `The model '${model}' is routed to '${routedTo}', which does not exist (GET /admin/v1/routes lists the routes).`;
    super(`${what} GET /v1/models lists the models this server can load.`, 404, "invalid_request_error", "model_not_found", "model");
  }
}

export class NotFoundError extends LmxError {
  constructor(message: string) {
    super(message, 404, "invalid_request_error", "not_found");
  }
}

export class AuthenticationError extends LmxError {
  constructor(message = "Missing or invalid API key. Send it as 'Authorization: Bearer <key>'.") {
    super(message, 401, "invalid_request_error", "invalid_api_key");
  }
}

export class ForbiddenError extends LmxError {
  constructor(message: string, code = "forbidden") {
    super(message, 403, "invalid_request_error", code);
  }
}

export class OverloadedError extends LmxError {
  constructor(message: string) {
    super(message, 503, "server_error", "server_overloaded");
  }
}

export class EngineError extends LmxError {
  constructor(message: string, code = "engine_error") {
    super(message, 500, "server_error", code);
  }
}

export class ModelLoadError extends LmxError {
  constructor(message: string, code = "model_load_failed", status = 500, type: ErrorType = "server_error") {
    super(message, status, type, code);
  }
}

/**
 * The model file itself is malformed or inconsistent (see src/gguf/): the server is fine, the file
 * is not, so a 4xx. A ModelLoadError so the scheduler passes it through unchanged.
 */
export class InvalidModelFileError extends ModelLoadError {
  constructor(message: string) {
    super(message, "invalid_model_file", 422, "invalid_request_error");
  }
}

/**
 * The engine died of an illegal instruction while trying a model: code this CPU cannot run (an
 * engine built for another CPU, or a miscompiled kernel). The server's fault, not the file's.
 */
export class EngineCrashedError extends ModelLoadError {
  constructor(message: string) {
    super(message, "engine_crashed", 500, "server_error");
  }
}

/** The client went away; 499 is what proxies log for that, and nobody is left to read the body. */
export class GenerationAbortedError extends LmxError {
  constructor() {
    super("generation aborted: the client closed the request", 499, "invalid_request_error", "client_closed");
  }
}

/** The engine produced nothing (no token, no prompt batch) for too long; the generation was stopped. */
export class GenerationStalledError extends LmxError {
  constructor(model: string, seconds: number) {
    super(
      `model '${model}' made no progress for ${seconds} s (no token generated, no prompt batch evaluated), so the generation was stopped. ` +
      "Retry; if the model is this slow on purpose, raise --stall-timeout (LMX_STALL_TIMEOUT).",
      504, "server_error", "generation_stalled");
  }
}

/** A mistake in how the command line or config was written; the CLI prints it without a stack. */
export class UsageError extends Error {
  override name = "UsageError";
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---- Hugging Face hub downloads (src/hub/) ----

/** A repo id, file path or revision that could escape the hub cache, or a symlink planted inside it. */
export class UnsafePathError extends LmxError {
  constructor(message: string, param: string | null = null) {
    super(message, 400, "invalid_request_error", "unsafe_path", param);
  }
}

/**
 * The hub refused this server's credentials (gated or private repo, or a repo that does not exist:
 * the hub answers 401 for those too). 403 rather than 401 because a 401 from LMX means the
 * caller's own API key was wrong, and here it was not.
 */
export class HubAuthError extends LmxError {
  constructor(message: string) {
    super(message, 403, "permission_error", "hub_auth_required");
  }
}

/** The repo, revision or file is not on the hub. */
export class HubNotFoundError extends LmxError {
  constructor(message: string) {
    super(message, 404, "invalid_request_error", "hub_not_found");
  }
}

/** The hub kept failing (5xx, network) after retries. */
export class HubUnavailableError extends LmxError {
  constructor(message: string) {
    super(message, 502, "server_error", "hub_unavailable");
  }
}

/** Downloaded bytes do not hash to what the hub says they should. */
export class ChecksumMismatchError extends LmxError {
  constructor(readonly path: string, readonly want: string, readonly got: string) {
    super(`checksum mismatch for ${path}, want ${want} got ${got}`, 502, "server_error", "checksum_mismatch");
  }
}

/** Not enough free space in the cache's file system for the bytes still to download. */
export class InsufficientDiskSpaceError extends LmxError {
  constructor(readonly needed: number, readonly available: number, message: string) {
    super(message, 507, "server_error", "insufficient_storage");
  }
}

/** Nothing in the repo matches what was asked for (quant, file, format). */
export class NoMatchingFileError extends LmxError {
  constructor(message: string) {
    super(message, 404, "invalid_request_error", "no_matching_file");
  }
}

/** Loading would exceed the memory budget even after evicting idle models. */
export class InsufficientMemoryError extends LmxError {
  constructor(message: string) {
    super(message, 503, "server_error", "insufficient_memory");
  }
}

// ---- Releases: self-update and engine bundles (src/update/), the OS service (src/service/) ----

/** Updating lmx or an engine failed; whatever was installed before is left as it was. */
export class UpdateError extends Error {
  override name = "UpdateError";
}

/** A manifest or checksum list is unsigned, signed by a key this build does not trust, or altered. */
export class SignatureError extends UpdateError {
  override name = "SignatureError";
}

/** Installing, starting or inspecting the background service failed. */
export class ServiceError extends Error {
  override name = "ServiceError";
}

/** The GGUF's `general.architecture` is one the active llama.cpp engine cannot load. */
export class UnsupportedArchitectureError extends ModelLoadError {
  constructor(readonly architecture: string, message: string) {
    super(message, "unsupported_architecture");
  }
}

/**
 * Another engine was selected; the server restarts into it once in-flight requests finish. A
 * ModelLoadError so the scheduler passes it through unchanged, with 503 so clients retry.
 */
export class EngineRestartingError extends ModelLoadError {
  constructor(message: string) {
    super(message, "engine_restarting", 503);
  }
}

// ---- MLX runtime and engine (src/runtimes/, src/engines/mlx/) ----

/** An MLX model was asked for and no MLX runtime is installed (or the configured Python is unusable). */
export class RuntimeNotInstalledError extends LmxError {
  constructor(message: string) {
    super(message, 503, "server_error", "runtime_not_installed");
  }
}

/** Installing, updating or checking a runtime failed; what was installed before is unchanged. */
export class RuntimeInstallError extends LmxError {
  constructor(message: string) {
    super(message, 500, "server_error", "runtime_install_failed");
  }
}

/** The runtime cannot be removed or replaced right now (models use it, or another operation runs). */
export class RuntimeBusyError extends LmxError {
  constructor(message: string) {
    super(message, 409, "invalid_request_error", "runtime_busy");
  }
}

/**
 * The engine could not enforce the requested output format and the model's reply does not match
 * it; LMX says so instead of returning the invalid reply.
 */
export class OutputFormatError extends LmxError {
  constructor(message: string) {
    super(message, 500, "server_error", "output_format_not_enforced");
  }
}

/**
 * A model sharded across nodes lost one of them (a rank's process exited, its node stopped
 * answering): requests it was serving fail with this, and the model is unloaded on every node.
 */
export class NodeLostError extends LmxError {
  constructor(message: string) {
    super(message, 503, "server_error", "node_lost");
    // The next request loads the model again where it fits (or says why not) at once.
    this.retryAfterSeconds = 1;
  }
}

/** The engine ended a loaded model on purpose (its distributed group was ended by the coordinator): unloaded, not failed. */
export class ModelEndedError extends LmxError {
  constructor(message: string) {
    super(message, 503, "server_error", "model_unloaded");
  }
}

/** A request reached a node that holds only a follower rank of a sharded model. */
export class NotLeaderError extends LmxError {
  constructor(message: string) {
    super(message, 409, "invalid_request_error", "not_coordinator", "model");
  }
}

/** A model is in use in a way the request would break (loaded here for other work). */
export class ModelBusyError extends LmxError {
  constructor(message: string) {
    super(message, 409, "invalid_request_error", "model_busy", "model");
  }
}

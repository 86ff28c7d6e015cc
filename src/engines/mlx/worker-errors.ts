// What the MLX supervisor throws, each mapped to its HTTP status by its class.

import { EngineError, LmxError } from "../../errors.ts";
import type { FromWorker } from "./protocol.ts";

/** The worker died, hung or broke the protocol; requests it held cannot finish. */
export class WorkerCrashedError extends EngineError {
  constructor(message: string) {
    super(message, "worker_crashed");
  }
}

/** The worker crashed and could not be started again just now; the client should retry shortly. */
export class WorkerUnavailableError extends LmxError {
  constructor(message: string, retryAfterSeconds: number) {
    super(message, 503, "server_error", "worker_restarting");
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The worker crashed too often within the restart window; no more restarts for this loaded model. */
export class WorkerFailedError extends EngineError {
  constructor(message: string) {
    super(message, "worker_failed");
  }
}

/** The worker answered a request with an error of its own. */
export class WorkerRequestError extends Error {
  override name = "WorkerRequestError";
  constructor(readonly reply: Extract<FromWorker, { type: "error" }>) {
    super(reply.message);
  }
}

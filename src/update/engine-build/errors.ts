// The errors of an engine build: a failure names what went wrong (and where the full log is), a
// cancel (signal, DELETE on the job) is told apart so callers can answer it as such.

import { UpdateError } from "../../errors.ts";

export class EngineBuildError extends UpdateError {
  override name = "EngineBuildError";
  constructor(message: string, readonly logPath?: string) {
    super(logPath === undefined ? message : `${message}\nFull log: ${logPath}`);
  }
}

export class EngineBuildCancelled extends EngineBuildError {
  override name = "EngineBuildCancelled";
}

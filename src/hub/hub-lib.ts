// @huggingface/hub is imported when a pull or a search first needs it, not when the server starts:
// importing it is ≈40 ms of CPU of a ≈300 ms start-up (docs/performance.md, "Engine settings").

import type * as Hub from "@huggingface/hub";

let lib: typeof Hub | undefined;

export async function hubLib(): Promise<typeof Hub> {
  lib ??= await import("@huggingface/hub");
  return lib;
}

// Nothing can have thrown the library's errors before it was loaded, so "not loaded" answers false.

export function isHubApiError(err: unknown): err is Hub.HubApiError {
  return lib !== undefined && err instanceof lib.HubApiError;
}

export function isInvalidApiResponse(err: unknown): err is Hub.InvalidApiResponseFormatError {
  return lib !== undefined && err instanceof lib.InvalidApiResponseFormatError;
}

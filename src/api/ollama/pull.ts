// /api/pull: a Hugging Face pull through LMX's download jobs, its progress as Ollama's NDJSON lines.
import { Elysia } from "elysia";
import type { DownloadJobs } from "../../downloads/jobs.ts";
import { InvalidRequestError, LmxError } from "../../errors.ts";
import type { EventBus, Stamped } from "../../events/bus.ts";
import { streamResponse } from "../sse.ts";
import { NDJSON } from "./generation.ts";
import { PullBody } from "./schemas.ts";

/**
 * An Ollama model name as a download spec: `hf.co/org/repo:QUANT` is how Ollama itself pulls from
 * Hugging Face; LMX takes `org/repo`, `org/repo:QUANT` and `org/repo:file.gguf`. `:latest` means
 * no tag.
 */
export function pullSpec(name: string): string {
  const spec = name.replace(/^(https?:\/\/)?(hf\.co|huggingface\.co)\//i, "");
  return spec.endsWith(":latest") ? spec.slice(0, -":latest".length) : spec;
}

type Progress = { status: string; digest?: string; total?: number; completed?: number };

/**
 * Follows one job to its end: `onProgress` gets each line, the promise settles when the job is
 * done or fails. A client that goes away cancels the job, as Ollama stops a pull then (the
 * partial file stays for the next pull to resume).
 */
function follow(jobs: DownloadJobs, events: EventBus, spec: string, signal: AbortSignal, onProgress: (p: Progress) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let id: string | undefined;
    let file = spec;
    const early: Stamped[] = [];
    const handle = (e: Stamped) => {
      if (!("id" in e) || e.id !== id) return;
      switch (e.type) {
        case "download.progress":
          // A report between files names none: it still belongs to the last one.
          file = e.file || file;
          onProgress({ status: `pulling ${file}`, digest: file, total: e.bytesTotal, completed: e.bytesDone });
          break;
        case "download.done":
          finish();
          onProgress({ status: "verifying sha256 digest" });
          onProgress({ status: "writing manifest" });
          onProgress({ status: "success" });
          resolve();
          break;
        case "download.failed":
          finish();
          reject(new LmxError(`pull ${spec}: ${e.error}`, 500, "server_error", "pull_failed"));
          break;
        case "download.cancelled":
          finish();
          reject(new LmxError(`pull ${spec} was cancelled`, 500, "server_error", "pull_cancelled"));
          break;
        default:
          break;
      }
    };
    const unsubscribe = events.subscribe((e) => (id === undefined ? early.push(e) : handle(e)));
    const onAbort = () => {
      if (id === undefined) return;
      try {
        jobs.cancel(id);
      } catch {
        // Finished meanwhile.
      }
    };
    const finish = () => {
      unsubscribe();
      signal.removeEventListener("abort", onAbort);
    };
    try {
      id = jobs.create(spec).id;
    } catch (err) {
      finish();
      reject(err);
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    onProgress({ status: "pulling manifest" });
    for (const e of early.splice(0)) handle(e);
  });
}

export function pullRoutes(jobs: DownloadJobs, events: EventBus) {
  return new Elysia().post("/api/pull", async ({ body, request }) => {
    const name = body.model ?? body.name;
    if (!name) throw new InvalidRequestError("model is required", "model");
    const spec = pullSpec(name);
    if (body.stream === false) {
      await follow(jobs, events, spec, request.signal, () => undefined);
      return { status: "success" };
    }
    return streamResponse(request.signal, NDJSON, (send, signal) => follow(jobs, events, spec, signal, send));
  }, {
    body: PullBody,
    detail: {
      summary: "Pull a model from Hugging Face (Ollama)",
      tags: ["Ollama"],
      description: "model: org/repo, org/repo:QUANT or org/repo:file.gguf (an hf.co/ prefix is accepted). NDJSON progress lines {status, digest, total, completed} (digest: the file being fetched) then {status: \"success\"}; stream: false answers once done.",
    },
  });
}

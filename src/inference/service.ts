import type { ChatRequest, CompletionRequest, EmbeddingResult, GenerationHooks, GenerationResult } from "../engines/types.ts";
import { OverloadedError } from "../errors.ts";
import type { Lease, Scheduler } from "../scheduler/scheduler.ts";

/** Runs requests on loaded models: takes a sequence from the scheduler, generates, gives it back. */
export class InferenceService {
  constructor(private readonly scheduler: Scheduler) {}

  private async withLease<T>(model: string, signal: AbortSignal | undefined, run: (lease: Lease) => Promise<T>): Promise<T> {
    const lease = await this.scheduler.acquire(model, signal);
    try {
      return await run(lease);
    } catch (err) {
      // The lease was aborted by an unload, not by the client: say so instead of "client closed".
      if (lease.signal.aborted && !signal?.aborted) throw new OverloadedError(`model '${model}' was unloaded while generating; retry`);
      throw err;
    } finally {
      lease.release();
    }
  }

  chat(model: string, request: ChatRequest, hooks: GenerationHooks): Promise<GenerationResult> {
    return this.withLease(model, hooks.signal, (lease) => lease.model.chat(request, { ...hooks, signal: lease.signal }));
  }

  /** Several prompts (the list form of `prompt`) run one after another on one sequence. */
  complete(model: string, requests: CompletionRequest[], hooks: GenerationHooks & { onStart?: (index: number) => void }): Promise<GenerationResult[]> {
    return this.withLease(model, hooks.signal, async (lease) => {
      const results: GenerationResult[] = [];
      for (const [i, request] of requests.entries()) {
        hooks.onStart?.(i);
        results.push(await lease.model.complete(request, { ...hooks, signal: lease.signal }));
      }
      return results;
    });
  }

  embed(model: string, inputs: string[], signal?: AbortSignal): Promise<EmbeddingResult> {
    return this.withLease(model, signal, (lease) => lease.model.embed(inputs, lease.signal));
  }
}

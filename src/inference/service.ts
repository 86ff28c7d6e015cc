import type { ChatRequest, CompletionRequest, EmbeddingResult, GenerationHooks, GenerationResult } from "../engines/types.ts";
import type { Scheduler } from "../scheduler/scheduler.ts";

/** Runs requests on loaded models: takes a sequence from the scheduler, generates, gives it back. */
export class InferenceService {
  constructor(private readonly scheduler: Scheduler) {}

  async chat(model: string, request: ChatRequest, hooks: GenerationHooks): Promise<GenerationResult> {
    const lease = await this.scheduler.acquire(model, hooks.signal);
    try {
      return await lease.model.chat(request, hooks);
    } finally {
      lease.release();
    }
  }

  /** Several prompts (the list form of `prompt`) run one after another on one sequence. */
  async complete(model: string, requests: CompletionRequest[], hooks: GenerationHooks & { onStart?: (index: number) => void }): Promise<GenerationResult[]> {
    const lease = await this.scheduler.acquire(model, hooks.signal);
    try {
      const results: GenerationResult[] = [];
      for (const [i, request] of requests.entries()) {
        hooks.onStart?.(i);
        results.push(await lease.model.complete(request, hooks));
      }
      return results;
    } finally {
      lease.release();
    }
  }

  async embed(model: string, inputs: string[], signal?: AbortSignal): Promise<EmbeddingResult> {
    const lease = await this.scheduler.acquire(model, signal);
    try {
      return await lease.model.embed(inputs, signal);
    } finally {
      lease.release();
    }
  }
}

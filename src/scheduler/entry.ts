// One model's place in the scheduler: its lifecycle, the loaded instance, its slots and what runs on it.
import type { LoadedModel, MemoryEstimate } from "../engines/types.ts";
import { log } from "../log.ts";
import type { StateMachine } from "../util/state-machine.ts";
import { modelLifecycle, type ModelState } from "./lifecycle.ts";
import type { Slots } from "./slots.ts";

export class Entry {
  readonly lifecycle: StateMachine<ModelState>;
  loaded: LoadedModel | undefined;
  loading: Promise<LoadedModel> | undefined;
  slots: Slots | undefined;
  memory: MemoryEstimate | undefined;
  ttlSeconds = 0;
  /** One controller per running request, so an unload can stop them before freeing the model. */
  readonly inflight = new Set<AbortController>();
  lastUsed = 0;
  loadedAt = 0;
  /** Serialises load and unload of this model. */
  op: Promise<unknown> = Promise.resolve();

  constructor(readonly id: string) {
    this.lifecycle = modelLifecycle(id, { onChange: ({ from, to, reason }) => log.debug("model state", { model: id, from, to, reason }) });
  }

  get busy(): boolean {
    return (this.slots?.running ?? 0) > 0 || (this.slots?.queued ?? 0) > 0;
  }
}

export const totalBytes = (m: MemoryEstimate | undefined) => (m ? m.modelBytes + m.contextBytes : 0);

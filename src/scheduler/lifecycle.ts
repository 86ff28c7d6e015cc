// A model instance's lifecycle as an explicit state machine: every change goes through `transition`,
// which refuses moves the design does not allow, so a race shows up as a clear error instead of a
// half-loaded model.

export type ModelState = "unloaded" | "loading" | "ready" | "unloading" | "failed";

const allowed: Record<ModelState, readonly ModelState[]> = {
  unloaded: ["loading"],
  loading: ["ready", "failed"],
  ready: ["unloading"],
  unloading: ["unloaded"],
  failed: ["loading", "unloaded"],
};

export class InvalidTransitionError extends Error {
  override name = "InvalidTransitionError";
}

export class Lifecycle {
  private current: ModelState = "unloaded";
  private changedAt = Date.now();

  constructor(private readonly onChange?: (from: ModelState, to: ModelState) => void) {}

  get state(): ModelState {
    return this.current;
  }

  get since(): number {
    return this.changedAt;
  }

  transition(to: ModelState): void {
    const from = this.current;
    if (!allowed[from].includes(to)) throw new InvalidTransitionError(`model cannot go from ${from} to ${to}`);
    this.current = to;
    this.changedAt = Date.now();
    this.onChange?.(from, to);
  }
}

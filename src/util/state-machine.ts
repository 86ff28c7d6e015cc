// Explicit states with validated transitions, for every lifecycle in LMX (a loaded model in the
// scheduler, an MLX worker process in its supervisor). Each lifecycle is a transition table over
// this one machine: every change goes through `transition`, which refuses moves the table does not
// list, so a race shows up as a clear error instead of a half-loaded model or a leaked process.

/** For each state, the states it may move to. */
export type TransitionTable<S extends string> = { readonly [K in S]: readonly S[] };

export interface TransitionEvent<S extends string> {
  from: S;
  to: S;
  /** Why, when the caller said (a crash reason, an unload reason). */
  reason?: string;
  at: number;
}

export class InvalidTransitionError extends Error {
  override name = "InvalidTransitionError";
  constructor(readonly machine: string, readonly from: string, readonly to: string) {
    super(`${machine} cannot go from ${from} to ${to}`);
  }
}

export interface StateMachineOptions<S extends string> {
  onChange?: (event: TransitionEvent<S>) => void;
  now?: () => number;
  /** Transitions kept for status and debugging; older ones are dropped. */
  historySize?: number;
}

export class StateMachine<S extends string> {
  private current: S;
  private changedAt: number;
  private readonly log: TransitionEvent<S>[] = [];
  private readonly now: () => number;

  constructor(
    /** Names the machine in errors ("model 'x'", "mlx worker for 'x'"). */
    readonly name: string,
    private readonly table: TransitionTable<S>,
    initial: S,
    private readonly opts: StateMachineOptions<S> = {},
  ) {
    this.current = initial;
    this.now = opts.now ?? Date.now;
    this.changedAt = this.now();
  }

  get state(): S {
    return this.current;
  }

  /** When the current state was entered. */
  get since(): number {
    return this.changedAt;
  }

  /** The last transitions, oldest first. */
  get history(): readonly TransitionEvent<S>[] {
    return this.log;
  }

  can(to: S): boolean {
    return this.table[this.current].includes(to);
  }

  is(...states: S[]): boolean {
    return states.includes(this.current);
  }

  /** Moves to `to`, or throws InvalidTransitionError (and changes nothing) when the table does not allow it. */
  transition(to: S, reason?: string): void {
    const from = this.current;
    if (!this.can(to)) throw new InvalidTransitionError(this.name, from, to);
    this.current = to;
    this.changedAt = this.now();
    const event: TransitionEvent<S> = { from, to, at: this.changedAt, ...(reason !== undefined ? { reason } : {}) };
    this.log.push(event);
    if (this.log.length > (this.opts.historySize ?? 20)) this.log.shift();
    this.opts.onChange?.(event);
  }
}

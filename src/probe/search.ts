// The search over context lengths, independent of any model: it only sees a `check(n)` that says
// whether length n loads and works. It assumes "works" is monotone (if n works, every shorter
// length does) but tolerates noise by re-checking its answer before accepting it.

export interface StepOutcome {
  loads: boolean;
  works: boolean;
  decidedBy: "copy" | "needle" | "load" | null;
  detail: string;
}

export interface SearchStep extends StepOutcome {
  contextLength: number;
  ms: number;
}

export interface SearchResult {
  /** Largest length that loaded and worked; 0 when none did. */
  testedContextLength: number;
  /** Why the search stopped where it did. */
  reason: string;
  decidedBy: StepOutcome["decidedBy"];
  steps: SearchStep[];
  timedOut: boolean;
}

export interface SearchOptions {
  min: number;
  max: number;
  /** Stop when the gap between the largest pass and the smallest fail is at most this share of the fail. */
  resolution?: number;
  /** Lengths are multiples of this (context sizes are allocated in such steps anyway). */
  granularity?: number;
  /** Epoch ms after which no new step starts. */
  deadline?: number;
  /** How often a passing answer may be re-checked and refuted before the search gives up on it. */
  maxConfirmations?: number;
  check: (contextLength: number) => Promise<StepOutcome>;
  onStep?: (step: SearchStep) => void;
  now?: () => number;
}

export async function searchContextLength(opts: SearchOptions): Promise<SearchResult> {
  const now = opts.now ?? Date.now;
  const resolution = opts.resolution ?? 0.05;
  const g = Math.max(1, opts.granularity ?? 1);
  const round = (n: number) => Math.max(g, Math.round(n / g) * g);
  const min = round(opts.min);
  const max = Math.max(min, Math.floor(opts.max / g) * g);
  const steps: SearchStep[] = [];
  let timedOut = false;

  const run = async (n: number): Promise<SearchStep | undefined> => {
    if (opts.deadline !== undefined && now() >= opts.deadline) {
      timedOut = true;
      return undefined;
    }
    const t0 = now();
    const outcome = await opts.check(n);
    const step = { ...outcome, contextLength: n, ms: now() - t0 };
    steps.push(step);
    opts.onStep?.(step);
    return step;
  };
  const passed = (s: SearchStep | undefined) => s !== undefined && s.loads && s.works;
  const result = (tested: number, reason: string, decider?: SearchStep): SearchResult => ({
    testedContextLength: tested, reason, decidedBy: decider?.decidedBy ?? null, steps, timedOut,
  });

  // A small size first: a model that fails here works at no length worth searching.
  const first = await run(min);
  if (!first) return result(0, "time budget exhausted before the first check");
  if (!passed(first)) {
    return result(0, first.loads ? `does not work even at ${min} tokens: ${first.detail}` : `does not load at ${min} tokens: ${first.detail}`, first);
  }
  let lo = first;
  if (max === min) return result(min, `works at ${min} tokens, the largest length allowed`, lo);

  const top = await run(max);
  if (!top) return result(lo.contextLength, `time budget exhausted; works at ${lo.contextLength}`, lo);
  if (passed(top)) return result(max, `works at the maximum tested length ${max}`, top);
  let hi = top;

  let confirmations = 0;
  for (;;) {
    while ((hi.contextLength - lo.contextLength) / hi.contextLength > resolution && hi.contextLength - lo.contextLength > g) {
      const mid = round((lo.contextLength + hi.contextLength) / 2);
      if (mid <= lo.contextLength || mid >= hi.contextLength) break;
      const s = await run(mid);
      if (!s) return result(lo.contextLength, `time budget exhausted; works at ${lo.contextLength}, fails at ${hi.contextLength}`, lo);
      if (passed(s)) lo = s;
      else hi = s;
    }
    // Noise guard: the answer is re-checked once; a refuted pass becomes the new upper bound.
    if (lo.contextLength === min || confirmations >= (opts.maxConfirmations ?? 2)) break;
    confirmations++;
    const again = await run(lo.contextLength);
    if (!again) break;
    if (passed(again)) break;
    hi = again;
    const below = steps.filter((s) => passed(s) && s.contextLength < lo.contextLength).sort((a, b) => b.contextLength - a.contextLength)[0];
    lo = below ?? first;
  }
  const why = hi.loads ? `fails at ${hi.contextLength}: ${hi.detail}` : `does not load at ${hi.contextLength}: ${hi.detail}`;
  return result(lo.contextLength, `works at ${lo.contextLength}, ${why}`, lo);
}

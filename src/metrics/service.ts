// LMX's Prometheus metrics: request counts, latencies and tokens as the inference core reports
// them (it is the core's RequestObserver), and gauges read from the scheduler at scrape time.
// Its own registry: prom-client's global one would mix in whatever else registers there, and
// prom-client's default process metrics are not used because on Bun several read wrong (the heap
// size, the Node version, the active handles).
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ApiLabel, RequestObservation, RequestObserver, RequestOutcome } from "../core/observer.ts";
import type { ForwardObservation, PeerApiLabel, PeerObserver, SkipReason } from "../peers/observer.ts";
import type { ModelOccupancy } from "../scheduler/types.ts";
import { RecentErrors } from "./recent-errors.ts";

export interface MetricsSources {
  /** The model a requested name (id, alias or route) stands for, or undefined for a name nobody knows. */
  resolveModel(name: string): string | undefined;
  occupancy(): ModelOccupancy[];
  memoryBudget(): number;
  downloadsActive(): number;
  version: string;
  engineVersion(): string;
}

/** The model label of a name that is no known model: clients choose names, so they must not become labels. */
const UNKNOWN_MODEL = "unknown";

/** Seconds; from a short embedding to a long generation on a CPU. */
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const FIRST_TOKEN_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The HTTP status a failed request is answered with. */
function errorStatus(error: Error): number {
  const status = (error as { status?: unknown }).status;
  return typeof status === "number" && Number.isInteger(status) && status >= 400 && status < 600 ? status : 500;
}

/** `ok`, `aborted` (the client went away), or the HTTP status the error is answered with. */
function statusLabel(outcome: RequestOutcome): string {
  if (outcome.aborted) return "aborted";
  if (!outcome.error) return "ok";
  return String(errorStatus(outcome.error));
}

/** What the counters hold for one model since the server started. */
export interface ModelTotals {
  requests: number;
  promptTokens: number;
  generatedTokens: number;
}

export class Metrics implements RequestObserver, PeerObserver {
  readonly registry = new Registry();
  /** Failed requests land here as they end; the admin activity view adds the event bus's failures. */
  readonly errors = new RecentErrors();
  private readonly requests: Counter<"model" | "api" | "status">;
  private readonly duration: Histogram<"model" | "api">;
  private readonly firstToken: Histogram<"model" | "api">;
  private readonly promptTokens: Counter<"model">;
  private readonly generatedTokens: Counter<"model">;
  private readonly cachedTokens: Counter<"model">;
  private readonly draftTokens: Counter<"model">;
  private readonly draftAcceptedTokens: Counter<"model">;
  private readonly peerRequests: Counter<"node" | "api" | "status">;
  private readonly peerFirstByte: Histogram<"node" | "api">;
  private readonly peerDuration: Histogram<"node" | "api">;
  private readonly peerSkips: Counter<"node" | "reason">;

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: "lmx_requests_total", registers, labelNames: ["model", "api", "status"],
      help: "Inference requests finished, by model, API operation and outcome (ok, aborted, or the HTTP error status).",
    });
    this.duration = new Histogram({
      name: "lmx_request_duration_seconds", registers, labelNames: ["model", "api"], buckets: DURATION_BUCKETS,
      help: "Time from an inference request reaching the model queue to its end, including queueing and model loading.",
    });
    this.firstToken = new Histogram({
      name: "lmx_time_to_first_token_seconds", registers, labelNames: ["model", "api"], buckets: FIRST_TOKEN_BUCKETS,
      help: "Time from a generation request reaching the model queue to its first generated token (text, reasoning or tool call).",
    });
    this.promptTokens = new Counter({
      name: "lmx_prompt_tokens_total", registers, labelNames: ["model"],
      help: "Prompt tokens evaluated by generations and embeddings (a request for n choices evaluates its prompt n times).",
    });
    this.cachedTokens = new Counter({
      name: "lmx_prompt_cached_tokens_total", registers, labelNames: ["model"],
      help: "Of the prompt tokens, those not evaluated because the sequence already held them (prompt caching).",
    });
    this.draftTokens = new Counter({
      name: "lmx_draft_tokens_total", registers, labelNames: ["model"],
      help: "Tokens drafted by speculative decoding (prompt lookup or a draft model) and checked by the model.",
    });
    this.draftAcceptedTokens = new Counter({
      name: "lmx_draft_accepted_tokens_total", registers, labelNames: ["model"],
      help: "Of the drafted tokens, those the model accepted.",
    });
    this.generatedTokens = new Counter({
      name: "lmx_generated_tokens_total", registers, labelNames: ["model"],
      help: "Tokens generated, reasoning and tool calls included.",
    });
    // Requests forwarded to peers: their node is the peer's name (a bounded set an admin chooses).
    this.peerRequests = new Counter({
      name: "lmx_peer_requests_total", registers, labelNames: ["node", "api", "status"],
      help: "Requests forwarded to a peer whose answer went to the client, by peer, operation and outcome (ok, aborted, cut when the answer broke off after its first byte, or the peer's HTTP error status).",
    });
    this.peerFirstByte = new Histogram({
      name: "lmx_peer_time_to_first_byte_seconds", registers, labelNames: ["node", "api"], buckets: FIRST_TOKEN_BUCKETS,
      help: "Time from forwarding a request to a peer to the first byte of its answer.",
    });
    this.peerDuration = new Histogram({
      name: "lmx_peer_request_duration_seconds", registers, labelNames: ["node", "api"], buckets: DURATION_BUCKETS,
      help: "Time from forwarding a request to a peer to the end of its answer passed on.",
    });
    this.peerSkips = new Counter({
      name: "lmx_peer_fallbacks_total", registers, labelNames: ["node", "reason"],
      help: "Targets passed over before any byte of an answer reached the client, by node (a peer, or local for a fallback chain's local model) and reason (down, refused: 429/503 or no memory, auth_error, first_byte_timeout); the next target of a chain is tried, and a request with none left is answered 503.",
    });
    // Gauges below are read from the scheduler at scrape time, so they are never stale.
    const occupancyGauge = (name: string, help: string, labelNames: string[], value: (m: ModelOccupancy) => number | undefined, labels: (m: ModelOccupancy) => Record<string, string>) =>
      new Gauge({
        name, help, labelNames, registers,
        collect() {
          this.reset();
          for (const m of sources.occupancy()) {
            const v = value(m);
            if (v !== undefined) this.set(labels(m), v);
          }
        },
      });
    occupancyGauge("lmx_active_requests", "Requests generating on a model now.", ["model"], (m) => m.running, (m) => ({ model: m.id }));
    occupancyGauge("lmx_queued_requests", "Requests waiting for a free sequence of a model.", ["model"], (m) => m.queued, (m) => ({ model: m.id }));
    occupancyGauge("lmx_model_loaded", "1 for a model loaded in memory, 0 for a known model that is not.", ["model", "engine"], (m) => (m.loaded ? 1 : 0), (m) => ({ model: m.id, engine: m.engine }));
    occupancyGauge("lmx_model_memory_bytes", "Estimated memory a loaded model takes (weights and context).", ["model"], (m) => (m.loaded ? m.memoryBytes : undefined), (m) => ({ model: m.id }));
    new Gauge({
      name: "lmx_memory_budget_bytes", registers, help: "Memory all loaded models together may take (--memory-budget).",
      collect() {
        this.set(sources.memoryBudget());
      },
    });
    new Gauge({
      name: "lmx_downloads_active", registers, help: "Model downloads transferring now.",
      collect() {
        this.set(sources.downloadsActive());
      },
    });
    new Gauge({
      name: "lmx_build_info", registers, labelNames: ["version", "engine_version"],
      help: "Always 1; the labels name the LMX version and the node-llama-cpp version of its llama.cpp engine.",
      collect() {
        this.reset();
        this.set({ version: sources.version, engine_version: sources.engineVersion() }, 1);
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Per model, read from the same counters /metrics exposes (a client takes rates from two reads). */
  async totals(): Promise<Map<string, ModelTotals>> {
    const out = new Map<string, ModelTotals>();
    const of = (model: unknown): ModelTotals => {
      const key = String(model);
      let t = out.get(key);
      if (!t) out.set(key, (t = { requests: 0, promptTokens: 0, generatedTokens: 0 }));
      return t;
    };
    for (const { labels, value } of (await this.requests.get()).values) of(labels.model).requests += value;
    for (const { labels, value } of (await this.promptTokens.get()).values) of(labels.model).promptTokens += value;
    for (const { labels, value } of (await this.generatedTokens.get()).values) of(labels.model).generatedTokens += value;
    return out;
  }

  skipped(node: string, reason: SkipReason): void {
    this.peerSkips.inc({ node, reason });
  }

  forwarded(node: string, api: PeerApiLabel): ForwardObservation {
    const startedAt = performance.now();
    const seconds = () => (performance.now() - startedAt) / 1000;
    let ended = false;
    return {
      firstByte: () => this.peerFirstByte.observe({ node, api }, seconds()),
      end: (how) => {
        if (ended) return;
        ended = true;
        this.peerRequests.inc({ node, api, status: String(how) });
        this.peerDuration.observe({ node, api }, seconds());
      },
    };
  }

  start(requested: string, api: ApiLabel): RequestObservation {
    const model = this.sources.resolveModel(requested) ?? UNKNOWN_MODEL;
    const startedAt = performance.now();
    const seconds = () => (performance.now() - startedAt) / 1000;
    let ended = false;
    return {
      firstToken: () => this.firstToken.observe({ model, api }, seconds()),
      usage: (u) => {
        this.promptTokens.inc({ model }, u.promptTokens);
        this.cachedTokens.inc({ model }, u.cachedTokens ?? 0);
        this.generatedTokens.inc({ model }, u.completionTokens);
        if (u.draftTokens !== undefined) {
          this.draftTokens.inc({ model }, u.draftTokens);
          this.draftAcceptedTokens.inc({ model }, u.draftAcceptedTokens ?? 0);
        }
      },
      end: (outcome) => {
        if (ended) return;
        ended = true;
        this.requests.inc({ model, api, status: statusLabel(outcome) });
        if (outcome.error && !outcome.aborted) {
          this.errors.add({ source: "request", model: model === UNKNOWN_MODEL ? requested.slice(0, 200) : model, message: `${api}: ${outcome.error.message}`, status: errorStatus(outcome.error) });
        }
        this.duration.observe({ model, api }, seconds());
      },
    };
  }
}

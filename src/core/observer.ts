// What the core tells an observer (the metrics service) about each API request it serves. The core
// only reports; what is counted and how is the observer's business, so the core needs no metrics library.
import type { Usage } from "./events.ts";

/** The protocol and operation a request came in through; a fixed set, so it is safe as a metric label. */
export type ApiLabel =
  | "openai.chat"
  | "openai.completions"
  | "openai.embeddings"
  | "openai.responses"
  | "anthropic.messages"
  | "ollama.chat"
  | "ollama.generate"
  | "ollama.embed";

/** How a request ended: `error` unset for success; `aborted` when the client went away. */
export interface RequestOutcome {
  error?: Error;
  aborted: boolean;
}

/** One request's life, reported in order: first token (generations only), usage, then end once. */
export interface RequestObservation {
  firstToken(): void;
  usage(usage: Pick<Usage, "promptTokens" | "completionTokens" | "cachedTokens" | "draftTokens" | "draftAcceptedTokens">): void;
  end(outcome: RequestOutcome): void;
}

export interface RequestObserver {
  /** `model` is the name the client sent (an id, an alias or a routed name, or one that does not exist). */
  start(model: string, api: ApiLabel): RequestObservation;
}

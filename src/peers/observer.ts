// What the peers service tells an observer (the metrics service) about the requests it forwards.
// As with the core's RequestObserver, the peers service only reports; counting is the observer's.

/** Why a target was passed over before any byte of its answer reached the client. */
export type SkipReason = "down" | "refused" | "auth_error" | "first_byte_timeout";

/**
 * The operation a forwarded request is, from a fixed set so it is safe as a metric label: the
 * generation APIs' labels, and the other calls LMX forwards to a peer.
 */
export type PeerApiLabel =
  | "openai.chat"
  | "openai.completions"
  | "openai.embeddings"
  | "openai.responses"
  | "openai.responses.stored"
  | "anthropic.messages"
  | "anthropic.count_tokens"
  | "ollama.chat"
  | "ollama.generate"
  | "ollama.embed"
  | "ollama.show"
  | "ollama.ps"
  | "admin.models";

/**
 * How a forwarded answer ended: `ok`, `aborted` (the client went away), `cut` (it broke off after
 * its first byte), or the peer's HTTP error status.
 */
export type ForwardEnd = "ok" | "aborted" | "cut" | number;

/** One forwarded request's life: its answer's first byte (when one came), then its end, once. */
export interface ForwardObservation {
  firstByte(): void;
  end(how: ForwardEnd): void;
}

export interface PeerObserver {
  /** `node` is a peer's name, or "local" for a chain's local target. */
  skipped(node: string, reason: SkipReason): void;
  forwarded(node: string, api: PeerApiLabel): ForwardObservation;
}

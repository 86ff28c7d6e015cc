// Stop strings, matched once here for every engine on the text deltas an engine emits. Text leaves
// as soon as it cannot be the start of a stop string; the longest suffix that still could is held
// back. Matching runs an Aho–Corasick automaton over the stop strings: its state stands for the
// held text, so a delta costs time linear in its own length, never a re-scan of the reply. The
// automaton matches any set of needles, so reasoning and tool-call markers can join as needles of
// another kind when the core takes them over from the engines.
import { InvalidRequestError } from "../errors.ts";
import type { EventSink } from "./events.ts";

/**
 * Longest stop string accepted, in UTF-16 code units. The automaton takes a node per character,
 * so an unbounded stop string from a 16 MB body would cost gigabytes; 16 stops of this length
 * compile in a few milliseconds and megabytes.
 */
export const MAX_STOP_LENGTH = 1024;

/** Rejects stop strings the filter will not compile, before the request takes a sequence. */
export function checkStops(stops: readonly string[] | undefined): void {
  stops?.forEach((s, i) => {
    if (s.length > MAX_STOP_LENGTH) throw new InvalidRequestError(`stop[${i}] is ${s.length} characters long; a stop string may have at most ${MAX_STOP_LENGTH}`, "stop");
  });
}

interface Node {
  next: Map<string, number>;
  /** The state of the longest proper suffix of this node's path that is also in the trie. */
  fail: number;
  /** Length of this node's path: the held suffix it stands for. */
  depth: number;
  /** A stop string is exactly this node's path. */
  terminal: boolean;
  /** Some stop string is a suffix of this node's path (itself or through fail links). */
  matches: boolean;
}

/** The stop strings of one request, compiled over UTF-16 code units. */
class Automaton {
  readonly nodes: Node[] = [Automaton.node(0)];

  private static node(depth: number): Node {
    return { next: new Map(), fail: 0, depth, terminal: false, matches: false };
  }

  constructor(needles: readonly string[]) {
    for (const s of needles) {
      let at = 0;
      for (let i = 0; i < s.length; i++) {
        const node = this.nodes[at]!;
        let to = node.next.get(s[i]!);
        if (to === undefined) {
          to = this.nodes.length;
          this.nodes.push(Automaton.node(node.depth + 1));
          node.next.set(s[i]!, to);
        }
        at = to;
      }
      this.nodes[at]!.terminal = true;
    }
    // Breadth first, so every fail target is finished before a deeper node uses it.
    const queue: number[] = [];
    for (const v of this.nodes[0]!.next.values()) queue.push(v);
    for (let q = 0; q < queue.length; q++) {
      const u = this.nodes[queue[q]!]!;
      u.matches = u.terminal || this.nodes[u.fail]!.matches;
      for (const [c, v] of u.next) {
        this.nodes[v]!.fail = this.step(u.fail, c);
        queue.push(v);
      }
    }
  }

  /** The state after reading `c` in `state`. */
  step(state: number, c: string): number {
    let s = state;
    for (;;) {
      const to = this.nodes[s]!.next.get(c);
      if (to !== undefined) return to;
      if (s === 0) return 0;
      s = this.nodes[s]!.fail;
    }
  }

  /** Length of the longest stop string that is a suffix of `state`'s path (it starts earliest). */
  longestMatch(state: number): number {
    for (let s = state; s !== 0; s = this.nodes[s]!.fail) if (this.nodes[s]!.terminal) return this.nodes[s]!.depth;
    return 0;
  }
}

export interface StopFeed {
  /** Text that is final: none of it belongs to a stop string. */
  text: string;
  /** A stop string completed in this delta: `text` ends the reply, and later deltas are dropped. */
  stopped: boolean;
  /** Which stop string completed (APIs that name it, as Anthropic's `stop_sequence`). */
  matched?: string;
}

/**
 * Fed an engine's text deltas in order. Generation ends at the first stop string to complete;
 * the reply is the text before it (the longest stop completing there, when several do). Text that
 * could still begin a stop string is held until a later delta decides, or `flush` at the end.
 */
export class StopFilter {
  private readonly automaton: Automaton;
  private state = 0;
  /** Not yet emitted: exactly the path of `state`. */
  private held = "";
  private ended = false;

  constructor(stops: readonly string[]) {
    const needles = stops.filter((s) => s.length > 0);
    if (needles.length === 0) throw new RangeError("a StopFilter needs a non-empty stop string");
    this.automaton = new Automaton(needles);
  }

  get stopped(): boolean {
    return this.ended;
  }

  feed(delta: string): StopFeed {
    if (this.ended) return { text: "", stopped: true };
    const { nodes } = this.automaton;
    let state = this.state;
    for (let i = 0; i < delta.length; i++) {
      state = this.automaton.step(state, delta[i]!);
      if (!nodes[state]!.matches) continue;
      const text = this.held + delta.slice(0, i + 1);
      this.ended = true;
      this.held = "";
      // The held text is the state's path, so the match is a suffix of `text`.
      const cut = text.length - this.automaton.longestMatch(state);
      return { text: text.slice(0, cut), stopped: true, matched: text.slice(cut) };
    }
    this.state = state;
    const text = this.held + delta;
    const keep = nodes[state]!.depth;
    this.held = text.slice(text.length - keep);
    return { text: text.slice(0, text.length - keep), stopped: false };
  }

  /** The held text, once the engine ended without a stop string. */
  flush(): string {
    const rest = this.held;
    this.held = "";
    this.state = 0;
    return rest;
  }
}

/**
 * Puts a StopFilter between an engine and `emit`: text before the first stop string passes, held
 * text is flushed before a tool call, `usage` or `finish`, and once a stop string matched `onStop`
 * is called (the soft stop) and later output is dropped; the finish reason is then "stop", naming
 * the stop string (unless the engine reports a tool call it completed before).
 */
export function stopAtStrings(stops: readonly string[], emit: EventSink, onStop: () => void): EventSink {
  const filter = new StopFilter(stops);
  let matched: string | undefined;
  const flush = () => {
    const rest = filter.flush();
    if (rest) emit({ type: "text", text: rest });
  };
  return (e) => {
    if (filter.stopped) {
      // Logprobs come at the end on some engines; the adapter trims them to the text that was kept.
      if (e.type === "usage" || e.type === "progress" || e.type === "error" || e.type === "logprobs") emit(e);
      else if (e.type === "finish") emit(e.reason === "tool_calls" ? e : { type: "finish", reason: "stop", stopSequence: matched });
      return;
    }
    switch (e.type) {
      case "text": {
        const r = filter.feed(e.text);
        if (r.text) emit({ type: "text", text: r.text });
        if (r.stopped) {
          matched = r.matched;
          onStop();
        }
        return;
      }
      case "tool_call_start":
      case "usage":
      case "finish":
        flush();
        emit(e);
        return;
      default:
        emit(e);
    }
  };
}

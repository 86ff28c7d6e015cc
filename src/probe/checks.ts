import type { LoadedModel } from "../engines/types.ts";
import { generateOn } from "../core/collect.ts";
import { fillerSentences, randomNumber, randomWords, rng } from "./text.ts";

// The two "does this context length work" checks. Both place information at a chosen depth of a
// context filled to the length under test and look for it at the very end.

export interface CopyResult {
  depth: number;
  /** Mean log-prob (nats/token) of a passage that appeared earlier, minus that of one that did not. */
  margin: number;
  repeat: number;
  control: number;
}

/**
 * Copy margin needed to call a length working, in nats per token. Calibrated on the trained copy
 * fixture (4-8 where it works, under 1 past its trained length), on stories260K (which cannot
 * copy, but whose margins wander up to ±1.2 because it gives random words log-probs near -10)
 * and on random-weight models (±0.03): see docs/context-probe.md.
 */
export const COPY_MARGIN_THRESHOLD = 2.0;
/** Passage length in tokens: long enough to average out noise, short enough for small contexts. */
const passageTokens = (length: number) => Math.max(8, Math.min(32, Math.floor(length / 10)));
/** The first tokens of a passage cannot be predicted even by a perfect copier: they are not scored. */
const SKIP = 2;

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** Filler tokens: shuffled prose tokenized by the model itself, cut to exactly `count`. */
export function fillerTokens(model: LoadedModel, count: number, random: () => number): number[] {
  const out: number[] = [];
  while (out.length < count) {
    const chunk = " " + fillerSentences(Math.max(8, Math.ceil((count - out.length) / 12)), random).join(" ");
    out.push(...model.tokenize(chunk));
  }
  return out.slice(0, count);
}

/**
 * Model-agnostic copy check: passage A sits at `depth` of the filler, then the context ends with
 * passage B (never seen) followed by A again. A model that uses the whole context predicts the
 * repeated A far better than B. Run twice with A and B swapped so the passages' own
 * predictability cancels out.
 */
export async function copyCheck(model: LoadedModel, length: number, depth: number, seed: number, signal?: AbortSignal): Promise<CopyResult> {
  const random = rng(seed);
  const size = passageTokens(length);
  const passage = () => model.tokenize(" " + randomWords(size, random)).slice(0, size);
  const a = passage();
  const b = passage();
  // One token of room for BOS.
  const fillerCount = length - 1 - a.length - b.length - Math.max(a.length, b.length);
  if (fillerCount < 8) throw new Error(`context ${length} is too short for the copy check (use a larger --min)`);
  const filler = fillerTokens(model, fillerCount, random);
  const at = Math.floor(filler.length * depth);
  const margins: number[] = [];
  let repeat = 0;
  let control = 0;
  for (const [seen, unseen] of [[a, b], [b, a]] as const) {
    const prefix = [...filler.slice(0, at), ...seen, ...filler.slice(at)];
    const lp = await model.logprobs(prefix, [...unseen, ...seen], signal);
    const c = mean(lp.slice(SKIP, unseen.length));
    const r = mean(lp.slice(unseen.length + SKIP));
    margins.push(r - c);
    repeat += r / 2;
    control += c / 2;
  }
  return { depth, margin: mean(margins), repeat, control };
}

export interface NeedleResult {
  depth: number;
  found: boolean;
  answer: string;
}

/** Needle/recall check for chat models: a number stated at `depth`, asked for at the end. */
export async function needleCheck(model: LoadedModel, length: number, depth: number, seed: number, signal?: AbortSignal): Promise<NeedleResult> {
  const random = rng(seed);
  const secret = randomNumber(5, random);
  const question = `\n\nWhat is the secret number mentioned in the text above? Answer with the number only.`;
  const fact = ` The secret number is ${secret}. Remember it. `;
  const answerRoom = 16;
  const build = (fillerCount: number) => {
    const words = model.detokenize(fillerTokens(model, fillerCount, rng(seed + 1)));
    const cut = Math.floor(words.length * depth);
    return words.slice(0, cut) + fact + words.slice(cut) + question;
  };
  // Size the filler so the whole chat prompt lands just under the length: estimate, measure, correct.
  let fillerCount = Math.max(8, length - answerRoom - 64);
  let content = build(fillerCount);
  for (let i = 0; i < 3; i++) {
    const used = await model.countChatTokens({ messages: [{ role: "user", content }] });
    const over = used + answerRoom - length;
    if (over <= 0 && over > -32) break;
    fillerCount = Math.max(8, fillerCount - over);
    content = build(fillerCount);
  }
  const r = await generateOn(model, { kind: "chat", messages: [{ role: "user", content }], maxTokens: answerRoom, temperature: 0, seed }, signal);
  return { depth, found: r.text.includes(secret), answer: r.text.trim().slice(0, 40) };
}

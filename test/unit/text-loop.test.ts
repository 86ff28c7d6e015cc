// The raw completion loop (src/engines/llama/text-loop.ts) on a scripted sequence: byte tokens that
// split a UTF-8 character, end-of-generation, max tokens, the soft stop and a client abort.
import { describe, expect, test } from "bun:test";
import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { generateText, type TextLoopOptions } from "../../src/engines/llama/text-loop.ts";
import { GenerationAbortedError } from "../../src/errors.ts";

const EOG = 0;
/** Token t is the byte t (1–255); 0 ends the generation. */
const bytes = (tokens: readonly number[]) => new TextDecoder().decode(new Uint8Array(tokens));

function fakeModel(): LlamaModel {
  return {
    tokens: { nl: null },
    fileInfo: { metadata: { general: { architecture: "llama" } } },
    isEogToken: (t: Token) => t === EOG,
    detokenize: (tokens: readonly Token[], _special?: boolean, context: readonly Token[] = []) => bytes([...context, ...tokens]).slice(bytes(context).length),
  } as unknown as LlamaModel;
}

/** A sequence whose evaluate yields `script` after any input, and remembers what it was given. */
function fakeSequence(script: number[], onYield?: (i: number) => void) {
  const given: number[][] = [];
  const seq = {
    nextTokenIndex: 0,
    async adaptStateToTokens() {},
    async *evaluate(input: Token[]) {
      given.push([...input]);
      for (const [i, t] of script.entries()) {
        onYield?.(i);
        yield t as Token;
      }
    },
  };
  return { seq: seq as unknown as LlamaContextSequence, given };
}

const options = (over: Partial<TextLoopOptions> = {}): TextLoopOptions => ({ maxTokens: 100, repeatPenalty: false, signal: new AbortController().signal, ...over });

async function run(script: number[], over: Partial<TextLoopOptions> = {}, onYield?: (i: number) => void) {
  const { seq, given } = fakeSequence(script, onYield);
  const pieces: { text: string; tokens: number[] }[] = [];
  const reason = await generateText(seq, fakeModel(), [65, 66] as Token[], options(over), (text, tokens) => pieces.push({ text, tokens: [...tokens] }));
  return { reason, pieces, given };
}

describe("generateText", () => {
  test("a character split over byte tokens comes out whole, in one piece with all its tokens", async () => {
    const euro = [...new TextEncoder().encode("€")];
    const { reason, pieces, given } = await run([72, ...euro, 105, EOG]);
    expect(pieces).toEqual([{ text: "H", tokens: [72] }, { text: "€", tokens: euro }, { text: "i", tokens: [105] }]);
    expect(reason).toBe("eogToken");
    // The whole input went in (the fake sequence holds nothing to reuse).
    expect(given).toEqual([[65, 66]]);
  });

  test("max tokens ends it after exactly that many tokens", async () => {
    const { reason, pieces } = await run([72, 73, 74, 75], { maxTokens: 2 });
    expect(reason).toBe("maxTokens");
    expect(pieces.map((p) => p.text)).toEqual(["H", "I"]);
  });

  test("a byte that never completes a character is let out after four tokens", async () => {
    const { pieces } = await run([0xe2, 0xe2, 0xe2, 0xe2, 72, EOG]);
    expect(pieces.map((p) => p.tokens)).toEqual([[0xe2, 0xe2, 0xe2, 0xe2], [72]]);
  });

  test("the soft stop ends it normally; a client abort throws", async () => {
    const stop = new AbortController();
    const soft = await run([72, 73, 74], { stop: stop.signal }, (i) => { if (i === 1) stop.abort(); });
    expect(soft.reason).toBe("abort");
    expect(soft.pieces.map((p) => p.text)).toEqual(["H", "I"]);

    const client = new AbortController();
    const aborted = run([72, 73, 74], { signal: client.signal }, (i) => { if (i === 1) client.abort(); });
    await expect(aborted).rejects.toBeInstanceOf(GenerationAbortedError);
  });
});

describe("generateText pieces", () => {
  test("a token seen before is not decoded again, and its text is the same", async () => {
    const model = fakeModel();
    let decodes = 0;
    const detokenize = model.detokenize.bind(model);
    (model as { detokenize: LlamaModel["detokenize"] }).detokenize = ((...args: Parameters<LlamaModel["detokenize"]>) => {
      decodes++;
      return detokenize(...args);
    }) as LlamaModel["detokenize"];
    const script = [72, 73, 74, 75, ...Array.from({ length: 20 }, (_, i) => (i % 2 ? 32 : 104)), EOG];
    const { seq } = fakeSequence(script);
    const texts: string[] = [];
    await generateText(seq, model, [65] as Token[], options(), (text) => texts.push(text));
    expect(texts.join("")).toBe("HIJK" + "h h h h h h h h h h ");
    // Four tokens decoded against the prompt, then each of the two repeated tokens once.
    expect(decodes).toBe(6);
  });
});

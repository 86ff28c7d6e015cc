// The pure parts of embeddings: normalization, `dimensions`, the request checks and base64.
import { describe, expect, test } from "bun:test";
import { float32Base64 } from "../../src/api/openai/embeddings.ts";
import { checkDimensions, checkEmbeddingInputs, normalizeEmbedding } from "../../src/core/embeddings.ts";
import { InvalidRequestError } from "../../src/errors.ts";

const norm = (v: readonly number[]) => Math.hypot(...v);
function expectClose(a: readonly number[], b: readonly number[]): void {
  expect(a.length).toBe(b.length);
  a.forEach((x, i) => expect(x).toBeCloseTo(b[i]!, 12));
}

describe("normalizeEmbedding", () => {
  test("unit length, direction kept", () => {
    expectClose(normalizeEmbedding([3, 4]), [0.6, 0.8]);
    const v = normalizeEmbedding([1e-3, -2e-3, 5e-4]);
    expect(norm(v)).toBeCloseTo(1, 12);
    expect(v[1]! / v[0]!).toBeCloseTo(-2, 12);
  });

  test("dimensions keeps the leading components, then normalizes", () => {
    expectClose(normalizeEmbedding([3, 4, 12], 2), [0.6, 0.8]);
    expectClose(normalizeEmbedding([3, 4, 12], 3), [3 / 13, 4 / 13, 12 / 13]);
  });

  test("no overflow or underflow at the extremes; a zero vector stays zero", () => {
    expectClose(normalizeEmbedding([1e200, 1e200]), [Math.SQRT1_2, Math.SQRT1_2]);
    const tiny = normalizeEmbedding([3e-200, 4e-200]);
    expect(tiny[0]).toBeCloseTo(0.6, 12);
    expect(tiny[1]).toBeCloseTo(0.8, 12);
    expect(normalizeEmbedding([0, 0, 0])).toEqual([0, 0, 0]);
  });
});

describe("request checks", () => {
  const refused = (f: () => void, param: string) => {
    let err: unknown;
    try {
      f();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidRequestError);
    expect((err as InvalidRequestError).param).toBe(param);
  };

  test("dimensions: a positive integer no larger than the model's", () => {
    checkDimensions("m", undefined, 8);
    checkDimensions("m", 8, 8);
    refused(() => checkDimensions("m", 9, 8), "dimensions");
    refused(() => checkDimensions("m", 0, 8), "dimensions");
    refused(() => checkDimensions("m", 1.5, 8), "dimensions");
  });

  test("inputs: 1 to 2048, none empty, token ids non-negative integers", () => {
    checkEmbeddingInputs(["a", [0, 5]]);
    refused(() => checkEmbeddingInputs([]), "input");
    refused(() => checkEmbeddingInputs(Array.from({ length: 2049 }, () => "a")), "input");
    refused(() => checkEmbeddingInputs(["a", ""]), "input");
    refused(() => checkEmbeddingInputs([[]]), "input");
    refused(() => checkEmbeddingInputs([[1, -1]]), "input");
    refused(() => checkEmbeddingInputs([[1, 0.5]]), "input");
  });
});

test("base64 is little-endian float32", () => {
  const buf = Buffer.from(float32Base64([1, -0.5, 0.1]), "base64");
  expect(buf.length).toBe(12);
  expect([buf.readFloatLE(0), buf.readFloatLE(4), buf.readFloatLE(8)]).toEqual([1, -0.5, Math.fround(0.1)]);
});

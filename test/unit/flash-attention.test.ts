// The flash-attention rule behind `flash_attention: "auto"`, and the head size it reads from a GGUF.

import { describe, expect, test } from "bun:test";
import { chooseFlashAttention, MIN_CPU_HEAD_SIZE } from "../../src/engines/llama/flash-attention.ts";
import { attentionHeadSize } from "../../src/gguf/hparams.ts";
import type { GgufValue } from "../../src/gguf/reader.ts";

const meta = (entries: Record<string, GgufValue>) => new Map(Object.entries(entries));
const perLayer = (values: number[]): GgufValue => ({ itemType: "u32", length: values.length, values });

describe("flash attention under auto", () => {
  test("on the CPU: off for heads narrower than 64, on from 64", () => {
    expect(MIN_CPU_HEAD_SIZE).toBe(64);
    expect(chooseFlashAttention("auto", false, 8)).toEqual({ option: false, reported: "off" });
    expect(chooseFlashAttention("auto", false, 32)).toEqual({ option: false, reported: "off" });
    expect(chooseFlashAttention("auto", false, 63)).toEqual({ option: false, reported: "off" });
    expect(chooseFlashAttention("auto", false, 64)).toEqual({ option: true, reported: "on" });
    expect(chooseFlashAttention("auto", false, 128)).toEqual({ option: true, reported: "on" });
  });

  test("on the CPU without a known head size: llama.cpp's usual choice, on", () => {
    expect(chooseFlashAttention("auto", false, undefined)).toEqual({ option: true, reported: "on" });
  });

  test("on a GPU backend: node-llama-cpp's default, reported as auto", () => {
    expect(chooseFlashAttention("auto", true, 32)).toEqual({ option: undefined, reported: "auto" });
    expect(chooseFlashAttention("auto", true, 128)).toEqual({ option: undefined, reported: "auto" });
  });

  test("on and off are honoured everywhere", () => {
    for (const gpu of [false, true]) {
      for (const head of [8, 128, undefined]) {
        expect(chooseFlashAttention("on", gpu, head)).toEqual({ option: true, reported: "on" });
        expect(chooseFlashAttention("off", gpu, head)).toEqual({ option: false, reported: "off" });
      }
    }
  });
});

describe("attention head size from GGUF metadata", () => {
  test("embedding_length ÷ head_count", () => {
    expect(attentionHeadSize(meta({ "general.architecture": "llama", "llama.embedding_length": 64, "llama.attention.head_count": 8 }))).toBe(8);
    expect(attentionHeadSize(meta({ "general.architecture": "qwen2", "qwen2.embedding_length": 896, "qwen2.attention.head_count": 14 }))).toBe(64);
  });

  test("key_length wins when given (heads wider or narrower than embedding ÷ heads)", () => {
    expect(attentionHeadSize(meta({
      "general.architecture": "qwen3", "qwen3.embedding_length": 1024, "qwen3.attention.head_count": 16, "qwen3.attention.key_length": 128,
    }))).toBe(128);
  });

  test("per-layer lists: the narrowest layer; layers without attention are skipped", () => {
    expect(attentionHeadSize(meta({ "general.architecture": "x", "x.embedding_length": 512, "x.attention.head_count": perLayer([0, 8, 16]) }))).toBe(32);
    expect(attentionHeadSize(meta({ "general.architecture": "x", "x.attention.key_length": perLayer([128, 64]) }))).toBe(64);
    expect(attentionHeadSize(meta({ "general.architecture": "x", "x.embedding_length": 512, "x.attention.head_count": 4n }))).toBe(128);
  });

  test("unknown when the metadata does not say", () => {
    expect(attentionHeadSize(meta({}))).toBeUndefined();
    expect(attentionHeadSize(meta({ "general.architecture": "mamba", "mamba.embedding_length": 768 }))).toBeUndefined();
    expect(attentionHeadSize(meta({ "general.architecture": "x", "x.embedding_length": 512, "x.attention.head_count": 0 }))).toBeUndefined();
    expect(attentionHeadSize(meta({ "general.architecture": "x", "x.embedding_length": "wide", "x.attention.head_count": 8 }))).toBeUndefined();
  });
});

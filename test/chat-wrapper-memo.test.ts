import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as nlc from "node-llama-cpp";
import { type ChatHistoryItem, type ChatWrapper, type Llama, LlamaLogLevel, getLlama } from "node-llama-cpp";
import { chatWrapperFor } from "../src/engines/llama/chat-wrapper-memo.ts";
import { withTemplateGuard } from "../src/engines/llama/template-guard.ts";
import { RenderSandbox } from "../src/engines/llama/template-sandbox.ts";
import { validateGgufModel } from "../src/gguf/model.ts";
import { ensureFixtures } from "./fixtures/models.ts";

const fx = ensureFixtures();
let llama: Llama;
let dir: string;
let renders = 0;
const renderSync = RenderSandbox.prototype.renderSync;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lmx-wrapper-memo-"));
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  // Counts the renders that resolving a wrapper makes (each one a trip to the guard's worker).
  RenderSandbox.prototype.renderSync = function (this: RenderSandbox, template, itemsJson) {
    renders++;
    return renderSync.call(this, template, itemsJson);
  };
});

afterAll(async () => {
  RenderSandbox.prototype.renderSync = renderSync;
  await llama.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** A copy no other test has loaded (the memo lives as long as the process, and bun test runs every file in one). */
function fresh(path: string, name: string): string {
  const copy = join(dir, name);
  copyFileSync(path, copy);
  return copy;
}

/** The wrapper a fresh load of `path` gets, and how many renders choosing it took. */
async function load(path: string): Promise<{ wrapper: ChatWrapper; renders: number; prompt: string }> {
  const model = await llama.loadModel({ modelPath: path, vocabOnly: true });
  try {
    const before = renders;
    const wrapper = await chatWrapperFor(nlc, model, validateGgufModel(path));
    const made = renders - before;
    const chatHistory: ChatHistoryItem[] = [
      { type: "system", text: "Be brief." },
      { type: "user", text: "What time is it?" },
    ];
    const functions = { now: { description: "The time", params: { type: "object", properties: { zone: { type: "string" } } } } } as const;
    const state = await withTemplateGuard(nlc, () => wrapper.generateContextState({ chatHistory, availableFunctions: functions }));
    return { wrapper, renders: made, prompt: state.contextText.toString() };
  } finally {
    await model.dispose();
  }
}

describe("the chat wrapper of a model file", () => {
  test("is resolved once per file version: a built-in wrapper is reused as it is", async () => {
    const path = fresh(fx.qwen2Tiny, "qwen2-tiny.gguf");
    const first = await load(path);
    expect(first.wrapper.wrapperName).toBe("ChatML");
    expect(first.renders).toBeGreaterThan(1000);
    const again = await load(path);
    expect(again.wrapper).toBe(first.wrapper);
    expect(again.renders).toBe(0);
    expect(again.prompt).toBe(first.prompt);
  });

  test("a Jinja wrapper is rebuilt on the new model's tokenizer and renders the same prompt", async () => {
    const path = fresh(fx.llama3Tiny, "llama3-tiny.gguf");
    const first = await load(path);
    expect(first.wrapper).toBeInstanceOf(nlc.JinjaTemplateChatWrapper);
    expect(first.renders).toBeGreaterThan(1000);
    const again = await load(path);
    expect(again.wrapper).not.toBe(first.wrapper);
    expect(again.wrapper).toBeInstanceOf(nlc.JinjaTemplateChatWrapper);
    expect(again.renders).toBeLessThan(100);
    expect(again.prompt).toBe(first.prompt);
    expect(again.prompt).toContain("now");
  });
});

// Chat templates are Jinja from model files, i.e. code from the internet. node-llama-cpp renders
// them synchronously on the main thread (JinjaRenderer.render): thousands of times at load, when
// resolveChatWrapper compares a template with its specialised wrappers, and for every prompt. A
// template with a huge range() or a recursive macro would hang the event loop, grow without bound
// and ignore SIGTERM. So every one of those renders is answered by a worker thread
// (template-worker.ts) that works under caps and is terminated when it overruns time or memory:
//
// - At load, `probe` renders the template on sample chats in the worker while the event loop stays
//   free (before the weights are read); resolveChatWrapper then runs with each render answered
//   synchronously by the worker (Atomics.wait, at most the time limit, none once the template broke
//   a limit).
// - For a prompt, `prepare(fn)` runs generateContextState in rounds: a render whose answer is not
//   known yet is noted and fails that round; the noted renders run in the worker while the event
//   loop stays free, and the next round finds them in the cache.
// - A render outside those (node-llama-cpp re-rendering mid-generation) is answered synchronously.
//
// The worker's output is used as is, so the main thread never runs template code and nothing is
// rendered twice; the cache lives a minute (strftime_now makes output depend on the date).

import { createHash, randomBytes } from "node:crypto";
import type { ChatWrapper, LlamaModel } from "node-llama-cpp";
import { LmxError } from "../../errors.ts";
import { log } from "../../log.ts";
import { rng } from "../../util/random.ts";
import { RenderSandbox, type SandboxLimits } from "./template-sandbox.ts";
import type { RenderLimits, RenderOutcome } from "./template-worker.ts";

type NodeLlamaCpp = typeof import("node-llama-cpp");

export type TemplateGuardLimits = SandboxLimits & RenderLimits;

export const TEMPLATE_LIMITS: TemplateGuardLimits = {
  timeMs: 2_000,
  maxMemoryGrowthBytes: 256 * 1024 * 1024,
  maxSteps: 2_000_000,
  maxDepth: 1_000,
  maxStringChars: 8 * 1024 * 1024,
  maxRange: 100_000,
};

/** A model's chat template broke a render limit, so no prompt is built from it. */
export class InvalidChatTemplateError extends LmxError {
  constructor(message: string) {
    super(message, 400, "invalid_request_error", "invalid_chat_template");
  }
}

/** The renderer itself failed (its worker would not start or died): a server error, whatever the template. */
export class TemplateRendererError extends LmxError {
  constructor(message: string) {
    super(message, 500, "server_error", "template_renderer_failed");
  }
}

function unbroken(outcome: RenderOutcome): RenderOutcome {
  if (!outcome.ok && outcome.broken === true) throw new TemplateRendererError(outcome.message);
  return outcome;
}

/** Thrown inside a `prepare` round for a render whose answer is still to be computed. */
class RenderPending extends Error {
  constructor() {
    super("chat template render pending");
  }
}

const CACHE_ENTRIES = 512;
const CACHE_CHARS = 32 * 1024 * 1024;
const CACHE_TTL_MS = 60_000;
/** Limit breaches that depend on load or memory, not on the template alone, are not held against it for long. */
const TRANSIENT_VERDICT_MS = 60_000;
/** A prompt needs a round per render that depends on an earlier one: two or three. */
const MAX_ROUNDS = 32;

function hash(...parts: string[]): string {
  const h = createHash("sha256");
  for (const part of parts) h.update(part).update("\0");
  return h.digest("base64url");
}

interface Scope {
  /** Renders to run before the next round; undefined: render synchronously instead. */
  pending: Map<string, { template: string; itemsJson: string }> | undefined;
  breach: InvalidChatTemplateError | undefined;
}

export class TemplateGuard {
  private readonly sandbox: RenderSandbox;
  /** Its own worker, so a synchronous render never waits behind an asynchronous one (which may be hostile). */
  private readonly syncSandbox: RenderSandbox;
  private readonly cache = new Map<string, { outcome: RenderOutcome; at: number }>();
  private cacheChars = 0;
  /** Templates that broke a limit: template hash → why, and until when that verdict holds. */
  private readonly verdicts = new Map<string, { message: string; until: number }>();
  private scope: Scope | undefined;
  private readonly patched = new WeakSet<object>();

  constructor(readonly limits: TemplateGuardLimits = TEMPLATE_LIMITS) {
    this.sandbox = new RenderSandbox(limits);
    this.syncSandbox = new RenderSandbox(limits);
  }

  /**
   * Routes every Jinja render of this node-llama-cpp module through the guard. node-llama-cpp has
   * no hook for it, but all its renders (JS or native) go through one method, JinjaRenderer.render,
   * reached here through a chat wrapper built on a trivial template (rendered before the patch).
   */
  install(nlc: NodeLlamaCpp): void {
    const probe = new nlc.JinjaTemplateChatWrapper({ template: "{% for message in messages %}{{ message.content }}{% endfor %}" });
    const renderer = (probe as unknown as { _jinjaTemplate?: { _template?: unknown } })._jinjaTemplate;
    const proto = renderer === undefined ? undefined : Object.getPrototypeOf(renderer) as { render?: unknown } | null;
    if (typeof renderer?._template !== "string" || proto === null || proto === undefined || typeof proto.render !== "function") {
      throw new LmxError("this llama.cpp engine version renders chat templates in a way LMX cannot guard", 500, "server_error", "engine_incompatible");
    }
    if (this.patched.has(proto)) return;
    this.patched.add(proto);
    const guard = this;
    proto.render = function guardedRender(this: { _template: string }, items: Record<string, unknown>): string {
      return guard.answer(this._template, items);
    };
  }

  /**
   * Runs `fn` (synchronous node-llama-cpp code that renders templates, cheaply: a prompt) without
   * rendering any template on the main thread; a template that breaks a limit rejects with
   * InvalidChatTemplateError.
   */
  async prepare<T>(fn: () => T): Promise<T> {
    // node-llama-cpp stands random ids (Math.random) in for message contents before rendering, so
    // the same call renders different inputs each time. Every round of one `prepare` draws the same
    // ids from a generator seeded once per call (randomly, so the ids stay unguessable), and the
    // renders a round asks for are the ones the next round finds in the cache.
    const seed = randomBytes(4).readUInt32LE(0);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const scope: Scope = { pending: new Map(), breach: undefined };
      const { result, failed, failure } = this.within(scope, rng(seed), fn);
      if (scope.pending?.size === 0) {
        if (failed) throw failure;
        return result as T;
      }
      for (const [key, job] of scope.pending ?? []) {
        this.remember(key, job.template, unbroken(await this.sandbox.render(job.template, job.itemsJson)));
        const breach = this.breachOf(job.template);
        if (breach !== undefined) throw breach;
      }
    }
    throw new InvalidChatTemplateError(`the chat template needed more than ${MAX_ROUNDS} dependent renders`);
  }

  /**
   * Runs `fn` with each render it asks for answered by the worker while the main thread waits, at
   * most the time limit per render, and once a template broke a limit, not at all. For the
   * thousands of renders resolveChatWrapper makes at load (each in a `prepare` round would be
   * quadratic); `probe` has tried the template off the main thread before.
   */
  synchronously<T>(fn: () => T): T {
    const scope: Scope = { pending: undefined, breach: undefined };
    const { result, failed, failure } = this.within(scope, Math.random, fn);
    if (failed) throw failure;
    return result as T;
  }

  /**
   * Renders `template` in the worker on sample chats shaped like the ones node-llama-cpp renders
   * at load, so a template that breaks a limit on any of them fails here without blocking.
   */
  async probe(template: string): Promise<void> {
    const system = { role: "system", content: "You are a helpful assistant." };
    const user = { role: "user", content: "Hello! 1234567890 ~!@#$%^&*()" };
    const assistant = { role: "assistant", content: "Hi. How can I help?" };
    const tools = [{ type: "function", function: { name: "get_time", description: "The time", parameters: { type: "object", properties: { zone: { type: "string" } } } } }];
    const chats = [[system, user], [system, user, assistant], [system, user, assistant, user, assistant], [user]];
    for (const messages of chats) {
      for (const extra of [{}, { add_generation_prompt: true }, { add_generation_prompt: true, tools }]) {
        const itemsJson = JSON.stringify({ messages, bos_token: "<s>", eos_token: "</s>", eot_token: "</s>", ...extra });
        const key = hash(template, itemsJson);
        const known = this.breachOf(template);
        if (known !== undefined) throw known;
        if (this.cached(key) === undefined) this.remember(key, template, unbroken(await this.sandbox.render(template, itemsJson)));
      }
    }
  }

  /** Runs `fn` with `scope` as the current one; node-llama-cpp swallows render errors, so a breach is rethrown here. */
  private within<T>(scope: Scope, random: () => number, fn: () => T): { result?: T; failed: boolean; failure?: unknown } {
    const outer = this.scope;
    const original = Math.random;
    Math.random = random;
    this.scope = scope;
    let outcome: { result?: T; failed: boolean; failure?: unknown };
    try {
      outcome = { result: fn(), failed: false };
    } catch (err) {
      outcome = { failed: true, failure: err };
    } finally {
      this.scope = outer;
      Math.random = original;
    }
    if (scope.breach !== undefined) throw scope.breach;
    return outcome;
  }

  /** The answer to one JinjaRenderer.render call. */
  private answer(template: string, items: Record<string, unknown>): string {
    const breach = this.breachOf(template);
    if (breach !== undefined) {
      if (this.scope !== undefined) this.scope.breach ??= breach;
      throw breach;
    }
    const itemsJson = JSON.stringify(items);
    const key = hash(template, itemsJson);
    let outcome = this.cached(key);
    if (outcome === undefined) {
      if (this.scope?.pending !== undefined) {
        this.scope.pending.set(key, { template, itemsJson });
        throw new RenderPending();
      }
      outcome = this.syncSandbox.renderSync(template, itemsJson);
      this.remember(key, template, outcome);
    }
    if (outcome.ok) return outcome.output;
    if (outcome.broken === true) throw new TemplateRendererError(outcome.message);
    if (outcome.limit !== undefined) {
      const limited = this.breachOf(template) ?? new InvalidChatTemplateError(outcome.message);
      if (this.scope !== undefined) this.scope.breach ??= limited;
      throw limited;
    }
    // An ordinary template error: node-llama-cpp sees it as it would have from its own renderer.
    throw new Error(outcome.message);
  }

  private breachOf(template: string): InvalidChatTemplateError | undefined {
    const id = hash(template);
    const verdict = this.verdicts.get(id);
    if (verdict === undefined) return undefined;
    if (verdict.until < Date.now()) {
      this.verdicts.delete(id);
      return undefined;
    }
    return new InvalidChatTemplateError(verdict.message);
  }

  private cached(key: string): RenderOutcome | undefined {
    const hit = this.cache.get(key);
    if (hit === undefined) return undefined;
    if (Date.now() - hit.at > CACHE_TTL_MS) {
      this.forget(key);
      return undefined;
    }
    this.cache.delete(key);
    this.cache.set(key, hit);
    return hit.outcome;
  }

  private remember(key: string, template: string, outcome: RenderOutcome): void {
    if (!outcome.ok && outcome.broken === true) return;
    if (!outcome.ok && outcome.limit !== undefined) {
      const transient = outcome.limit === "time" || outcome.limit === "memory";
      const message = `the model's chat template was refused: ${outcome.message} (limits: ${this.limits.timeMs} ms, `
        + `${this.limits.maxSteps} steps, depth ${this.limits.maxDepth}, ${this.limits.maxStringChars} characters, range() of ${this.limits.maxRange})`;
      this.verdicts.set(hash(template), { message, until: transient ? Date.now() + TRANSIENT_VERDICT_MS : Number.POSITIVE_INFINITY });
      log.warn("chat template refused", { reason: outcome.message });
      return;
    }
    const chars = outcome.ok ? outcome.output.length : outcome.message.length;
    this.forget(key);
    this.cache.set(key, { outcome, at: Date.now() });
    this.cacheChars += chars;
    while (this.cache.size > CACHE_ENTRIES || this.cacheChars > CACHE_CHARS) {
      const oldest = this.cache.keys().next().value;
      if (oldest === undefined) break;
      this.forget(oldest);
    }
  }

  private forget(key: string): void {
    const hit = this.cache.get(key);
    if (hit === undefined) return;
    this.cache.delete(key);
    this.cacheChars -= hit.outcome.ok ? hit.outcome.output.length : hit.outcome.message.length;
  }
}

const guards = new WeakMap<object, TemplateGuard>();

/** The guard of this node-llama-cpp module, installed on first use. */
export function templateGuardOf(nlc: NodeLlamaCpp): TemplateGuard {
  let guard = guards.get(nlc);
  if (guard === undefined) {
    guard = new TemplateGuard();
    guard.install(nlc);
    guards.set(nlc, guard);
  }
  return guard;
}

/** Runs node-llama-cpp code that renders a prompt with every render guarded (see TemplateGuard.prepare). */
export function withTemplateGuard<T>(nlc: NodeLlamaCpp, fn: () => T): Promise<T> {
  return templateGuardOf(nlc).prepare(fn);
}

/** Tries a GGUF's chat template off the main thread, before its weights are loaded at all. */
export async function probeChatTemplate(nlc: NodeLlamaCpp, metadata: unknown): Promise<void> {
  const template = (metadata as { tokenizer?: { chat_template?: unknown } } | undefined)?.tokenizer?.chat_template;
  if (typeof template === "string" && template.trim() !== "") await templateGuardOf(nlc).probe(template);
}

/**
 * node-llama-cpp's resolveChatWrapper, which renders the model's template thousands of times on
 * sample chats to compare it with its specialised wrappers: probed off the main thread first,
 * then each render bounded.
 */
export async function resolveChatWrapperGuarded(nlc: NodeLlamaCpp, model: LlamaModel): Promise<ChatWrapper> {
  await probeChatTemplate(nlc, model.fileInfo.metadata);
  return templateGuardOf(nlc).synchronously(() => nlc.resolveChatWrapper(model));
}

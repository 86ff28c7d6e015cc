// A request's reasoning controls (reasoning_effort, chat_template_kwargs) applied to node-llama-cpp's
// chat wrappers. Each family exposes thinking differently: Qwen's wrapper can discourage thoughts,
// gpt-oss's harmony wrapper has effort levels, a Jinja template takes extra render variables
// (enable_thinking). Variants are built once per distinct setting and kept (bounded), since
// building a Jinja wrapper renders the template many times.
import type { ChatWrapper, HarmonyChatWrapper, JinjaTemplateChatWrapper, LlamaModel, QwenChatWrapper } from "node-llama-cpp";
import type { ChatGeneration } from "../../core/request.ts";
import { InvalidRequestError } from "../../errors.ts";
type NodeLlamaCpp = typeof import("node-llama-cpp");

const VARIANT_CACHE_LIMIT = 16;

export interface WrapperChoice {
  wrapper: ChatWrapper;
  /** Thinking turned off: the thought budget is 0, so a thought that opens anyway closes at once. */
  thinkingOff: boolean;
}

/** enable_thinking: false (a kwarg many templates read) means the same as reasoning_effort "none". */
function thinkingOff(request: ChatGeneration): boolean {
  return request.reasoningEffort === "none" || request.templateKwargs?.enable_thinking === false;
}

export class WrapperVariants {
  private readonly cache = new Map<string, ChatWrapper>();

  constructor(
    private readonly nlc: NodeLlamaCpp,
    private readonly model: LlamaModel,
    private readonly base: ChatWrapper,
    /** Builds a wrapper under the template guard (it may render the model's template). */
    private readonly guarded: <T>(build: () => T) => T,
  ) {}

  choose(request: ChatGeneration): WrapperChoice {
    const off = thinkingOff(request);
    const effort = request.reasoningEffort;
    const kwargs = request.templateKwargs ?? {};
    const extra = Object.keys(kwargs).filter((k) => k !== "enable_thinking");
    const key = JSON.stringify([off, effort ?? null, kwargs]);
    if (!off && effort === undefined && extra.length === 0) return { wrapper: this.base, thinkingOff: false };
    const hit = this.cache.get(key);
    if (hit) return { wrapper: hit, thinkingOff: off };
    const built = this.build(off, effort, kwargs, extra);
    if (this.cache.size >= VARIANT_CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, built);
    return { wrapper: built, thinkingOff: off };
  }

  private build(off: boolean, effort: ChatGeneration["reasoningEffort"], kwargs: Record<string, unknown>, extra: string[]): ChatWrapper {
    const nlc = this.nlc;
    const base = this.base;
    if (base instanceof nlc.JinjaTemplateChatWrapper) {
      const jinja = base as JinjaTemplateChatWrapper;
      // The template decides what effort means; it gets the request's value as the variable OpenAI-style templates read.
      const params: Record<string, unknown> = { ...(jinja.additionalRenderParameters ?? {}), ...kwargs };
      if (off) params.enable_thinking = false;
      if (effort !== undefined && effort !== "none") params.reasoning_effort = effort;
      return this.guarded(() => buildJinjaWrapper(nlc, { ...jinjaSettingsOf(jinja), additionalRenderParameters: params }, this.model));
    }
    if (extra.length > 0) {
      throw new InvalidRequestError(
        `chat_template_kwargs.${extra[0]} cannot be applied: this model's chat format (${base.wrapperName}) is built in, not rendered from its template; only enable_thinking is understood`,
        `chat_template_kwargs.${extra[0]}`, "unsupported_parameter");
    }
    if (base instanceof nlc.QwenChatWrapper) {
      const qwen = base as QwenChatWrapper;
      return new nlc.QwenChatWrapper({ variation: qwen.variation, keepOnlyLastThought: qwen.keepOnlyLastThought, thoughts: off ? "discourage" : qwen.thoughts });
    }
    if (base instanceof nlc.HarmonyChatWrapper) {
      const harmony = base as HarmonyChatWrapper;
      // Harmony has no "off": none and minimal take its lowest level (and the thought budget of 0).
      const level = effort === "high" || effort === "medium" || effort === "low" ? effort : "low";
      return new nlc.HarmonyChatWrapper({
        modelIdentity: harmony.modelIdentity,
        cuttingKnowledgeDate: harmony.cuttingKnowledgeDate,
        todayDate: harmony.todayDate,
        reasoningEffort: effort === undefined ? harmony.reasoningEffort : level,
        requiredChannels: harmony.requiredChannels,
        keepOnlyLastThought: harmony.keepOnlyLastThought,
      });
    }
    // Other formats have no effort levels; "none" still works through the thought budget.
    return base;
  }
}

type JinjaSettings = Omit<ConstructorParameters<NodeLlamaCpp["JinjaTemplateChatWrapper"]>[0], "tokenizer">;

/** What a Jinja wrapper was built with, but the tokenizer (which belongs to one loaded model). */
export function jinjaSettingsOf(jinja: JinjaTemplateChatWrapper): JinjaSettings {
  return {
    template: jinja.template,
    reasoning: jinja.reasoning,
    modelRoleName: jinja.modelRoleName,
    userRoleName: jinja.userRoleName,
    systemRoleName: jinja.systemRoleName,
    convertUnsupportedSystemMessagesToUserMessages: jinja.convertUnsupportedSystemMessagesToUserMessages,
    joinAdjacentMessagesOfTheSameType: jinja.joinAdjacentMessagesOfTheSameType,
    trimLeadingWhitespaceInResponses: jinja.trimLeadingWhitespaceInResponses,
    keepOnlyLastThought: jinja.keepOnlyLastThought,
    additionalRenderParameters: jinja.additionalRenderParameters,
  };
}

/** A Jinja wrapper on `model`'s tokenizer. Building renders the template: call it under the template guard. */
export function buildJinjaWrapper(nlc: NodeLlamaCpp, settings: JinjaSettings, model: LlamaModel): JinjaTemplateChatWrapper {
  return new nlc.JinjaTemplateChatWrapper({ ...settings, tokenizer: model.tokenizer });
}

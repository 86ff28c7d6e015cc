// Which chat wrapper a model file gets, remembered per file version. node-llama-cpp's
// resolveChatWrapper compares the template with each specialised wrapper by rendering it on sample
// chats: 3,553 renders and ≈1.6–2 s for a Qwen2 ChatML template, each render a trip to the template
// guard's worker. The answer depends on the file alone, so loading the same file again (after an
// idle unload, a swap between models, an unload and load through the API) reuses it: a built-in
// wrapper as it is (they keep no model state), a Jinja one rebuilt on the new model's tokenizer
// from its settings (the old model is not kept alive through the old wrapper).
import type { ChatWrapper, JinjaTemplateChatWrapper, LlamaModel } from "node-llama-cpp";
import type { GgufModel } from "../../gguf/model.ts";
import { resolveChatWrapperGuarded, templateGuardOf } from "./template-guard.ts";
import { buildJinjaWrapper, jinjaSettingsOf } from "./wrapper-variants.ts";

type NodeLlamaCpp = typeof import("node-llama-cpp");
type Known = { builtIn: ChatWrapper } | { jinja: ReturnType<typeof jinjaSettingsOf> };

/** Per engine module (two engine versions may resolve differently), per file version. */
const memo = new WeakMap<NodeLlamaCpp, WeakMap<GgufModel, Known>>();

/** The chat wrapper for `model`, loaded from `file` (validateGgufModel's object for that file version). */
export async function chatWrapperFor(nlc: NodeLlamaCpp, model: LlamaModel, file: GgufModel): Promise<ChatWrapper> {
  let perFile = memo.get(nlc);
  if (!perFile) memo.set(nlc, (perFile = new WeakMap()));
  const known = perFile.get(file);
  if (known && "jinja" in known) return templateGuardOf(nlc).synchronously(() => buildJinjaWrapper(nlc, known.jinja, model));
  if (known) return known.builtIn;
  const resolved = await resolveChatWrapperGuarded(nlc, model);
  perFile.set(file, resolved instanceof nlc.JinjaTemplateChatWrapper ? { jinja: jinjaSettingsOf(resolved as JinjaTemplateChatWrapper) } : { builtIn: resolved });
  return resolved;
}

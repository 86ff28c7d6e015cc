// The Anthropic adapter: the Messages API (/v1/messages, /v1/messages/count_tokens) as a thin
// translation between Anthropic's wire format and the inference core. Its errors have
// Anthropic's shape through `anthropicErrors`, registered in src/api/app.ts.
import type { InferenceCore } from "../../core/service.ts";
import { messagesRoutes, type MessagesOptions } from "./messages.ts";

export { anthropicErrors } from "./errors.ts";

export function anthropicRoutes(core: InferenceCore, options: MessagesOptions = {}) {
  return messagesRoutes(core, options);
}

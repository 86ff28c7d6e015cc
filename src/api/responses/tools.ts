// Responses tools as the core's function tools, and back. Function tools pass as they are; a
// custom tool (free text, as Codex's apply_patch) becomes a function of one string argument
// `input`; a namespace's tools are flattened to their own names (a name two namespaces share, or a
// top-level tool shares, is offered as `namespace.name`); tools OpenAI's servers run
// (web_search, file_search, mcp, …) are accepted and never offered. The map answers which wire
// item a call of a flattened name comes back as.
import { InvalidRequestError } from "../../errors.ts";
import type { JsonSchema, ToolChoice, ToolDefinition } from "../../core/request.ts";
import { checkJsonSchema } from "../limits.ts";
import type { CustomTool, FunctionTool, Tool, ToolChoiceBody } from "./schemas.ts";

export interface WireTool {
  kind: "function" | "custom";
  /** The name the client knows (without its namespace). */
  name: string;
  namespace?: string;
}

export interface ToolSet {
  /** What the model is offered. */
  definitions: ToolDefinition[];
  /** Offered name → the client's tool. */
  byModelName: Map<string, WireTool>;
}

const CUSTOM_INPUT: JsonSchema = {
  type: "object",
  properties: { input: { type: "string", description: "The tool's input as free text." } },
  required: ["input"],
};

const isFunction = (t: Tool): t is FunctionTool => t.type === "function";
const isCustom = (t: Tool): t is CustomTool => t.type === "custom";

function definition(t: FunctionTool | CustomTool, modelName: string, param: string, namespaceDescription?: string | null): ToolDefinition {
  const description = [namespaceDescription, t.description].filter((d): d is string => !!d).join("\n\n") || undefined;
  if (isCustom(t)) return { name: modelName, description, parameters: CUSTOM_INPUT };
  if (t.parameters) checkJsonSchema(t.parameters, `${param}.parameters`);
  return { name: modelName, description, parameters: t.parameters ?? undefined };
}

export function toolSet(tools: readonly Tool[] | null | undefined): ToolSet {
  const entries: { tool: FunctionTool | CustomTool; namespace?: string; namespaceDescription?: string | null; param: string }[] = [];
  (tools ?? []).forEach((t, i) => {
    if (isFunction(t) || isCustom(t)) entries.push({ tool: t, param: `tools[${i}]` });
    else if (t.type === "namespace" && "tools" in t) {
      t.tools.forEach((inner, j) => entries.push({ tool: inner, namespace: t.name, namespaceDescription: t.description, param: `tools[${i}].tools[${j}]` }));
    }
  });
  const uses = new Map<string, number>();
  for (const e of entries) uses.set(e.tool.name, (uses.get(e.tool.name) ?? 0) + 1);
  const definitions: ToolDefinition[] = [];
  const byModelName = new Map<string, WireTool>();
  for (const e of entries) {
    const modelName = e.namespace && uses.get(e.tool.name)! > 1 ? `${e.namespace}.${e.tool.name}` : e.tool.name;
    if (byModelName.has(modelName)) throw new InvalidRequestError(`duplicate tool name '${modelName}'`, `${e.param}.name`);
    byModelName.set(modelName, { kind: isCustom(e.tool) ? "custom" : "function", name: e.tool.name, namespace: e.namespace });
    definitions.push(definition(e.tool, modelName, e.param, e.namespaceDescription));
  }
  return { definitions, byModelName };
}

/** The offered name of the client's tool `name` (in `namespace` when given), if it is offered. */
export function modelNameOf(set: ToolSet, name: string, namespace?: string): string | undefined {
  for (const [modelName, t] of set.byModelName) {
    if (t.name === name && (namespace === undefined || t.namespace === namespace)) return modelName;
  }
  return set.byModelName.has(name) ? name : undefined;
}

/** `tool_choice` as the core's, and the tools it leaves offered (`allowed_tools` narrows them). */
export function toolChoiceOf(choice: ToolChoiceBody | null | undefined, set: ToolSet): { toolChoice?: ToolChoice; definitions: ToolDefinition[] } {
  const all = set.definitions;
  if (choice === undefined || choice === null) return { definitions: all };
  if (typeof choice === "string") return { toolChoice: choice, definitions: all };
  const named = (name: string, kind: "function" | "custom"): string => {
    const modelName = modelNameOf(set, name);
    if (!modelName || set.byModelName.get(modelName)!.kind !== kind) {
      throw new InvalidRequestError(`tool_choice names ${kind} tool '${name}', which is not in tools`, "tool_choice.name");
    }
    return modelName;
  };
  if (choice.type === "function" || choice.type === "custom") {
    if (typeof choice.name !== "string") throw new InvalidRequestError(`tool_choice.name is required for a ${choice.type} tool choice`, "tool_choice.name");
    return { toolChoice: { name: named(choice.name, choice.type) }, definitions: all };
  }
  if (choice.type === "allowed_tools") {
    if (choice.mode !== "auto" && choice.mode !== "required") throw new InvalidRequestError("tool_choice.mode must be 'auto' or 'required'", "tool_choice.mode");
    if (!choice.tools) throw new InvalidRequestError("tool_choice.tools is required for allowed_tools", "tool_choice.tools");
    const allowed = new Set<string>();
    choice.tools.forEach((t, i) => {
      // Hosted tools in the list are never offered, like the tools themselves.
      if ((t.type !== "function" && t.type !== "custom") || typeof t.name !== "string") return;
      const modelName = modelNameOf(set, t.name);
      if (!modelName) throw new InvalidRequestError(`tool_choice.tools[${i}] names '${t.name}', which is not in tools`, `tool_choice.tools[${i}].name`);
      allowed.add(modelName);
    });
    return { toolChoice: choice.mode, definitions: all.filter((d) => allowed.has(d.name)) };
  }
  throw new InvalidRequestError(`tool_choice of type '${choice.type}' forces a tool this server cannot run; use 'auto', 'required', 'none', a function, a custom tool or allowed_tools`, "tool_choice.type", "unsupported_parameter");
}

/** A custom tool's call arguments (`{"input": "…"}`) as its free-text input. */
export function customInputOf(args: string): string {
  try {
    const parsed = JSON.parse(args) as { input?: unknown };
    if (typeof parsed?.input === "string") return parsed.input;
  } catch {
    // A call max_output_tokens cut short: its raw arguments are what there is.
  }
  return args;
}

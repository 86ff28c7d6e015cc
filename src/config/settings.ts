// Every setting LMX reads, declared once: its flag, its LMX_* variable, its config-file key, its
// default and the description `--help` prints. Nothing else in the code base reads process.env for
// settings.

import { FLASH_ATTENTION_MODES, LOAD_SETTING_BOUNDS, SPECULATIVE_MODES } from "./load-settings.ts";

export type SettingKind = "string" | "int" | "bool" | "list" | "map";

interface SettingBase {
  /** camelCase key, also the key in $LMX_HOME/config.json. */
  key: string;
  kind: SettingKind;
  description: string;
  /** Shown in help instead of the default when the default is computed at run time. */
  defaultText?: string;
  placeholder?: string;
  /** Settings that only make sense at the command line (never in config.json). */
  flagOnly?: boolean;
  /** Other environment variables honoured after LMX_*, e.g. the Hugging Face tools' own. */
  envAliases?: readonly string[];
  min?: number;
  max?: number;
}

export interface StringSetting extends SettingBase {
  kind: "string";
  default?: string;
  /** The only values accepted, when the setting is one of a fixed few. */
  choices?: readonly string[];
}
export interface IntSetting extends SettingBase { kind: "int"; default?: number }
export interface BoolSetting extends SettingBase { kind: "bool"; default: boolean }
export interface ListSetting extends SettingBase { kind: "list"; default: string[] }
/** NAME=VALUE pairs: a repeatable flag, `;`-separated in the environment (or `separator`), an object in config.json. */
export interface MapSetting extends SettingBase { kind: "map"; separator?: string }
export type Setting = StringSetting | IntSetting | BoolSetting | ListSetting | MapSetting;

export const serveSettings = [
  { key: "host", kind: "string", default: "127.0.0.1", placeholder: "ADDR",
    description: "Address to bind. Binding anything but loopback requires an API key or --insecure-no-auth." },
  { key: "port", kind: "int", default: 1234, min: 0, max: 65535, placeholder: "N",
    description: "Port to listen on (1234 is LM Studio's, so clients configured for it work unchanged)." },
  { key: "ollamaPort", kind: "int", min: 1, max: 65535, placeholder: "PORT",
    description: "Also serve the API on this port of the same address (11434 is Ollama's, so unmodified Ollama clients work); same keys, Host and CORS checks. Off unless given." },
  { key: "model", kind: "list", default: [], placeholder: "[ID=]PATH.gguf",
    description: "A GGUF file to serve, in addition to the models directory; repeatable. ID defaults to the file name without .gguf." },
  { key: "modelsDir", kind: "string", defaultText: "$LMX_HOME/models", placeholder: "DIR",
    description: "Directory scanned (recursively) for .gguf files to serve." },
  { key: "threads", kind: "int", ...LOAD_SETTING_BOUNDS.threads, defaultText: "physical performance cores available", placeholder: "N",
    description: "CPU threads per loaded model. 0 means auto. Can be overridden per model in config.json." },
  { key: "parallel", kind: "int", default: 4, ...LOAD_SETTING_BOUNDS.parallel, placeholder: "N",
    description: "Requests one loaded model generates at once (parallel sequences of one context, batched together)." },
  { key: "ctx", kind: "int", ...LOAD_SETTING_BOUNDS.contextLength, defaultText: "4096, capped at the model's declared context", placeholder: "N",
    description: "Context length (tokens) of each parallel sequence. 0 means the model's declared context." },
  { key: "queue", kind: "int", default: 64, min: 0, max: 100000, placeholder: "N",
    description: "Requests that may wait for a free sequence per model; beyond this they get 503 at once." },
  { key: "flashAttention", kind: "string", default: "auto", choices: FLASH_ATTENTION_MODES, placeholder: "MODE",
    description: "Flash attention of GGUF models: auto, on or off. auto turns it off on the CPU for attention heads under 64 wide (measured slower there, docs/performance.md) and leaves the choice to llama.cpp on Metal. Per model: config.json, the load request's flash_attention." },
  { key: "speculative", kind: "string", choices: SPECULATIVE_MODES, defaultText: "off, or draft when --draft is given", placeholder: "MODE",
    description: "Speculative decoding of GGUF models: off, lookup (drafts tokens found in the prompt; helps replies that repeat it) or draft (a draft model, --draft). Output is the same as without. MLX models ignore this server-wide setting; per model they take draft with an MLX draft model (lookup is refused). Per model: config.json, the load request's speculative." },
  { key: "draft", kind: "string", placeholder: "MODEL",
    description: "Draft model for speculative decoding: a model id or a GGUF path, with the same vocabulary as the models it drafts for (a load fails otherwise). Per model: config.json, the load request's draft (a model id there)." },
  { key: "batchSize", kind: "int", min: 1, max: 65536, defaultText: "256 for llama.cpp on the CPU, 512 with Metal and for MLX", placeholder: "N",
    description: "Tokens evaluated per batch during prompt processing." },
  { key: "apiKey", kind: "list", default: [], placeholder: "KEY",
    description: "Require 'Authorization: Bearer KEY' on every route but /health; repeatable. Env: comma-separated list." },
  { key: "insecureNoAuth", kind: "bool", default: false,
    description: "Allow binding a non-loopback address without an API key." },
  { key: "corsOrigin", kind: "list", default: [], placeholder: "ORIGIN",
    description: "Origin allowed by CORS (repeatable; '*' allows any). CORS is off by default." },
  { key: "allowedHost", kind: "list", default: [], placeholder: "NAME",
    description: "Extra Host header names accepted besides the bound address and localhost (DNS-rebinding defence)." },
  { key: "maxBodySize", kind: "string", default: "16MB", placeholder: "SIZE",
    description: "Largest request body accepted (413 beyond it): 16MB holds far more text than any context." },
  { key: "idleTimeout", kind: "int", default: 30, min: 1, max: 255, placeholder: "SECONDS",
    description: "Close a connection idle this long, before its first request or between keep-alive requests (never while a request is being answered)." },
  { key: "maxConnections", kind: "int", default: 4096, min: 16, max: 1_000_000, placeholder: "N",
    description: "Open connections (counted as open file descriptors) beyond which new requests get 503 until idle ones time out." },
  { key: "memoryBudget", kind: "string", default: "75%", placeholder: "SIZE",
    description: "RAM all loaded models may use together: 24GB, 512MB or a share of physical RAM like 75%. Idle models are evicted to stay under it." },
  { key: "promptCacheSize", kind: "string", default: "4GB", placeholder: "SIZE",
    description: "Disk space (in $LMX_HOME/prompt-cache) for the KV caches of GGUF conversations whose sequence another request took: the conversation's next turn loads its prompt back instead of evaluating it again. All models together, least recently used out first, deleted on unload and exit; 0 turns it off. A 16k-token conversation takes 0.2 GB on a Qwen2-0.5B, 0.9 GB on a Qwen2.5-7B, 2 GB on a Llama-3-8B (f16 KV cache). MLX models keep their own prompt cache in memory." },
  { key: "ttl", kind: "int", default: 0, ...LOAD_SETTING_BOUNDS.ttl, placeholder: "SECONDS",
    description: "Unload a model after it has been idle this long; 0 keeps models loaded. Per model: the load request's ttl." },
  { key: "stallTimeout", kind: "int", default: 600, min: 1, max: 86_400, placeholder: "SECONDS",
    description: "Stop a generation that makes no progress (no token, no prompt batch) for this long and answer 504 generation_stalled, freeing its slot. Long prompts report each batch, so this bounds one batch, not the whole prompt." },
  { key: "reasoningFormat", kind: "string", default: "separate", placeholder: "FORMAT",
    description: "Where a thinking model's thoughts go unless a request says (reasoning_format): 'separate' (message.reasoning_content), 'inline' (in content between <think> tags) or 'none' (dropped; still counted in usage)." },
  { key: "shutdownGrace", kind: "int", default: 10, min: 0, max: 3600, placeholder: "SECONDS",
    description: "On SIGTERM/SIGINT, how long running requests may finish before they are aborted and the server exits anyway. A second signal exits at once." },
  { key: "storedResponses", kind: "int", default: 10_000, min: 0, max: 10_000_000, placeholder: "N",
    description: "Responses (/v1/responses with store true) kept for previous_response_id and GET; the oldest go first beyond this. 0 keeps none." },
  { key: "storedResponsesSize", kind: "string", default: "256MB", placeholder: "SIZE",
    description: "Bytes all stored responses may take together (input and output JSON); the oldest go first beyond this." },
  { key: "storedResponsesDays", kind: "int", default: 30, min: 1, max: 3650, placeholder: "DAYS",
    description: "Days a stored response is kept (OpenAI keeps them 30 days)." },
  { key: "hubUrl", kind: "string", default: "https://huggingface.co", placeholder: "URL", envAliases: ["HF_ENDPOINT"],
    description: "Hugging Face Hub endpoint (a mirror works)." },
  { key: "hfToken", kind: "string", placeholder: "TOKEN", envAliases: ["HF_TOKEN"],
    description: "Hugging Face access token for gated and private repos. Prefer the env var to a flag." },
  { key: "hubCache", kind: "string", defaultText: "$HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub", placeholder: "DIR", envAliases: ["HF_HUB_CACHE"],
    description: "Hugging Face hub cache where pulls are stored (shared with huggingface-cli, mlx-lm and llama.cpp)." },
  { key: "lmstudioDir", kind: "string", defaultText: "~/.lmstudio/models", placeholder: "DIR",
    description: "LM Studio's model folder, scanned by 'lmx import'." },
  { key: "ollamaDir", kind: "string", defaultText: "~/.ollama/models", placeholder: "DIR", envAliases: ["OLLAMA_MODELS"],
    description: "Ollama's model store, scanned by 'lmx import'." },
  { key: "logLevel", kind: "string", default: "info", placeholder: "LEVEL",
    description: "debug, info, warn or error." },
  { key: "logFormat", kind: "string", default: "text", placeholder: "FORMAT",
    description: "text or json (one JSON object per line)." },
  { key: "reprobeStale", kind: "bool", default: false,
    description: "At start-up (as after an engine update), probe again, one model at a time in the background, every model whose context probe result another engine version measured." },
  { key: "autoInstallRuntimes", kind: "bool", default: false,
    description: "Install the MLX runtime (Python environment with mlx-lm) the first time an MLX model is loaded, instead of answering runtime_not_installed." },
  { key: "routes", kind: "map", placeholder: "NAME=MODEL[,MODEL…]",
    description: "Serve requests for model NAME with MODEL (an id or alias, or PEER/model) on every API; repeatable. Several MODELs are a fallback chain, tried in order while one is down, refuses (429/503), cannot load for memory or sends no first byte in time. '*' in NAME is a wildcard (claude-*=qwen3-coder); an exact name wins over wildcards, the longest pattern among them. A name that is a model's id or alias is served as that model." },
  // Peers (src/peers/): other LMX or OpenAI-compatible servers whose models this one serves too.
  { key: "peers", kind: "map", separator: ",", placeholder: "NAME=URL",
    description: "Another LMX or OpenAI-compatible server (vLLM, llama-server, a cloud API) whose models this server lists and proxies, its URL with or without /v1; repeatable. Env: comma-separated. API keys: config.json peers [{name, url, apiKey: \"env:VAR\"}] or 'lmx peers add --api-key-env VAR'." },
  { key: "peerPoll", kind: "int", default: 10, min: 1, max: 3600, placeholder: "SECONDS",
    description: "How often each peer's /v1/models is polled for its health and models." },
  { key: "peerFirstByteTimeout", kind: "int", default: 60, min: 1, max: 3600, placeholder: "SECONDS",
    description: "A peer that sends no first byte of its answer within this long is passed over for the next target of a fallback chain (with none left: 503 model_unavailable); after the first byte, the longest silence before the answer is cut off." },
  { key: "python", kind: "string", placeholder: "PATH",
    description: "Python interpreter of an existing environment that has mlx-lm installed, used for MLX models instead of the runtime LMX manages." },
  { key: "llamaRepo", kind: "string", default: "https://github.com/ggml-org/llama.cpp", placeholder: "URL",
    description: "llama.cpp git repository that 'lmx engine build' and POST /admin/v1/engines/builds fetch from (a mirror, or a local clone as a path or file:// URL)." },
] as const satisfies readonly Setting[];

export type ServeSettingKey = (typeof serveSettings)[number]["key"];

export function flagName(key: string): string {
  // Repeated once per route, so singular on the command line.
  if (key === "routes") return "--route";
  if (key === "peers") return "--peer";
  return "--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
}

export function envName(key: string): string {
  const base = "LMX_" + key.replace(/[A-Z]/g, (c) => "_" + c).toUpperCase();
  // Plural env names read better for list settings given as comma-separated values.
  if (key === "apiKey") return "LMX_API_KEYS";
  if (key === "model") return "LMX_MODELS";
  return base;
}

/** Settings of the client commands (ls, ps, pull, …), which talk to a running server. */
export const clientSettings = [
  { key: "url", kind: "string", placeholder: "URL", defaultText: "http://<host>:<port> from the serve settings",
    description: "Base URL of the LMX server to talk to." },
  { key: "host", kind: "string", default: "127.0.0.1", placeholder: "ADDR", description: "Server address when --url is not given (same setting as serve)." },
  { key: "port", kind: "int", default: 1234, min: 1, max: 65535, placeholder: "N", description: "Server port when --url is not given (same setting as serve)." },
  { key: "token", kind: "string", placeholder: "KEY", envAliases: ["LMX_API_KEY"], flagOnly: true,
    description: "API key to send (needs admin scope for most commands). Prefer the env var LMX_API_KEY to the flag." },
  { key: "json", kind: "bool", default: false, flagOnly: true, description: "Print machine-readable JSON instead of tables." },
] as const satisfies readonly Setting[];

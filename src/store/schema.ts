// Drizzle table definitions. They mirror migrations.ts, which is what actually creates the tables:
// migrations are the history, this file is the current shape the code queries.
import { integer, primaryKey, real, sqliteTable, text } from "drizzle-orm/sqlite-core";
import type { LoadSettings } from "../config/load-settings.ts";


export const models = sqliteTable("models", {
  id: text("id").primaryKey(),
  format: text("format", { enum: ["gguf", "mlx"] }).notNull(),
  /** GGUF file (first shard) or MLX folder. */
  path: text("path").notNull(),
  sourceRepo: text("source_repo"),
  revision: text("revision"),
  files: text("files", { mode: "json" }).$type<{ path: string; size: number; sha256?: string }[]>().notNull().default([]),
  sizeBytes: integer("size_bytes").notNull().default(0),
  architecture: text("architecture"),
  quantization: text("quantization"),
  declaredContext: integer("declared_context"),
  aliases: text("aliases", { mode: "json" }).$type<string[]>().notNull().default([]),
  loadDefaults: text("load_defaults", { mode: "json" }).$type<LoadSettings>().notNull().default({}),
  /** "imported" entries point at files LMX does not own (LM Studio, Ollama, a user folder) and are never deleted by rm. */
  origin: text("origin", { enum: ["download", "import"] }).notNull(),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

export type DownloadState = "queued" | "running" | "done" | "failed" | "cancelled";

export const downloads = sqliteTable("downloads", {
  id: text("id").primaryKey(),
  spec: text("spec").notNull(),
  repo: text("repo").notNull(),
  revision: text("revision").notNull(),
  files: text("files", { mode: "json" }).$type<{ path: string; size: number; sha256?: string }[]>().notNull().default([]),
  state: text("state", { enum: ["queued", "running", "done", "failed", "cancelled"] }).notNull(),
  bytesDone: integer("bytes_done").notNull().default(0),
  bytesTotal: integer("bytes_total").notNull().default(0),
  note: text("note"),
  error: text("error"),
  modelId: text("model_id"),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

export const loadHistory = sqliteTable("load_history", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  modelId: text("model_id").notNull(),
  event: text("event", { enum: ["load", "unload", "evict", "fail", "expire"] }).notNull(),
  contextLength: integer("context_length"),
  parallel: integer("parallel"),
  threads: integer("threads"),
  memoryBytes: integer("memory_bytes"),
  durationMs: integer("duration_ms"),
  error: text("error"),
  at: integer("at").notNull(),
});

export const apiKeys = sqliteTable("api_keys", {
  id: text("id").primaryKey(),
  name: text("name"),
  scope: text("scope", { enum: ["admin", "inference"] }).notNull(),
  /** sha256 of the key; the key itself is shown once and never stored. */
  hash: text("hash").notNull().unique(),
  prefix: text("prefix").notNull(),
  createdAt: integer("created_at").notNull(),
  lastUsedAt: integer("last_used_at"),
  revokedAt: integer("revoked_at"),
});

export interface ProbeStep {
  contextLength: number;
  loads: boolean;
  works: boolean;
  decidedBy: "copy" | "needle" | "load" | null;
  detail: string;
  ms: number;
}

export const contextProbes = sqliteTable("context_probes", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  modelId: text("model_id").notNull(),
  modelDigest: text("model_digest").notNull(),
  engineVersion: text("engine_version").notNull(),
  /** KV cache element type: it changes memory per token, so results are kept per type. */
  kvCacheType: text("kv_cache_type").notNull(),
  machine: text("machine").notNull(),
  declaredContext: integer("declared_context"),
  /** 0 when the model works at no tested length. */
  testedContext: integer("tested_context").notNull(),
  memoryBytes: integer("memory_bytes"),
  decidedBy: text("decided_by"),
  reason: text("reason"),
  steps: text("steps", { mode: "json" }).$type<ProbeStep[]>().notNull().default([]),
  durationMs: integer("duration_ms").notNull(),
  testedAt: integer("tested_at").notNull(),
});

/** Runtimes LMX installed itself (today only "mlx"); the row is written once the install passed its check. */
export const runtimes = sqliteTable("runtimes", {
  name: text("name").primaryKey(),
  /** Folder of this install under $LMX_HOME/runtimes/<name>/envs/. */
  path: text("path").notNull(),
  pythonPath: text("python_path").notNull(),
  pythonVersion: text("python_version").notNull(),
  /** Installed versions of the pinned packages, e.g. {"mlx": "0.32.4", "mlx-lm": "0.32.2"}. */
  packages: text("packages", { mode: "json" }).$type<Record<string, string>>().notNull().default({}),
  uvVersion: text("uv_version"),
  /** What the post-install check ran on ("Device(cpu, 0)", "Device(gpu, 0)"). */
  device: text("device"),
  installedAt: integer("installed_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
  verifiedAt: integer("verified_at").notNull(),
});

/** Routes set through the admin API (src/models/routes.ts); configured ones are never stored. */
export const routes = sqliteTable("routes", {
  /** The requested name, `*` a wildcard. */
  name: text("name").primaryKey(),
  /** A model id or alias. */
  model: text("model").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/** Responses kept for `previous_response_id` and GET /v1/responses/{id}: the wire JSON as answered. */
export const responses = sqliteTable("responses", {
  id: text("id").primaryKey(),
  /** Milliseconds: the order of eviction, oldest first. */
  createdAt: integer("created_at").notNull(),
  /** Size of `response` and `input` together, for the store's size bound. */
  bytes: integer("bytes").notNull(),
  response: text("response", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
  /** Every input item of the conversation so far, previous responses' included, in order. */
  input: text("input", { mode: "json" }).$type<Record<string, unknown>[]>().notNull(),
});

/** Peers added through the admin API (src/peers/registry.ts); configured ones are never stored. */
export const peers = sqliteTable("peers", {
  name: text("name").primaryKey(),
  /** Base URL without a trailing /v1. */
  url: text("url").notNull(),
  /** The key sent to the peer, or `env:VAR` to read it from the server's environment. */
  apiKey: text("api_key"),
  updatedAt: integer("updated_at").notNull(),
});

/** Which peer stored a response a peer answered (GET/DELETE /v1/responses/{id}, previous_response_id go there). */
export const peerResponses = sqliteTable("peer_responses", {
  id: text("id").primaryKey(),
  peer: text("peer").notNull(),
  /** Milliseconds: the order of eviction, oldest first. */
  createdAt: integer("created_at").notNull(),
});

/**
 * Model files that passed a trial load (src/engines/llama/trial-load.ts) with an engine version,
 * so a restart does not run the trial again; a row counts only while the file keeps this
 * identity (size, mtime, inode).
 */
export const trialLoads = sqliteTable("trial_loads", {
  path: text("path").notNull(),
  engineVersion: text("engine_version").notNull(),
  size: integer("size").notNull(),
  mtimeMs: real("mtime_ms").notNull(),
  inode: integer("inode").notNull(),
  testedAt: integer("tested_at").notNull(),
}, (t) => [primaryKey({ columns: [t.path, t.engineVersion] })]);

/** What loading a model file takes in memory with given settings, as llama.cpp's simulated load said; valid as trial_loads rows are. */
export const memoryEstimates = sqliteTable("memory_estimates", {
  path: text("path").notNull(),
  engineVersion: text("engine_version").notNull(),
  /** The load settings the estimate depends on, as src/engines/llama/engine.ts writes them. */
  settings: text("settings").notNull(),
  size: integer("size").notNull(),
  mtimeMs: real("mtime_ms").notNull(),
  inode: integer("inode").notNull(),
  modelBytes: integer("model_bytes").notNull(),
  contextBytes: integer("context_bytes").notNull(),
  gpuBytes: integer("gpu_bytes").notNull(),
  estimatedAt: integer("estimated_at").notNull(),
}, (t) => [primaryKey({ columns: [t.path, t.engineVersion, t.settings] })]);

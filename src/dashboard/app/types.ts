// The fields of LMX's admin and inference answers the dashboard reads (the API has more).

export interface ManagedModel {
  id: string;
  format: string;
  state: string;
  architecture: string | null;
  quantization: string | null;
  size_bytes: number | null;
  max_context_length: number | null;
  loaded_context_length: number | null;
  tested_context_length: number | null;
  tested_memory_bytes: number | null;
  memory_bytes: number | null;
  active_requests: number;
  queued_requests: number;
  has_chat_template: boolean | null;
  embedding_model: boolean | null;
  origin: string;
  error?: string;
}

export interface HubFile {
  path: string;
  size: number;
  quant: string | null;
  mmproj: boolean;
  fits: boolean | null;
}

export interface HubResult {
  repo: string;
  format: string;
  downloads: number;
  likes: number;
  gated: boolean;
  files: HubFile[];
  fits: boolean | null;
  defaultSelection: { quant: string | null; files: string[]; bytes: number } | null;
}

export interface DownloadJob {
  id: string;
  model: string;
  state: string;
  bytes_done: number;
  bytes_total: number | null;
  error: string | null;
  note: string | null;
  created_at: string;
}

export interface ProbeJob {
  id: string;
  model: string;
  state: string;
  error: string | null;
  started_at: string;
  steps: { context_length: number; loads: boolean; works: boolean; decided_by: string | null; detail: string; ms: number }[];
  result: { tested_context_length: number | null } | null;
}

export interface SystemInfo {
  lmx_version: string;
  os: { platform: string; arch: string; release: string };
  cpu: { model: string; logical_cores: number; physical_cores: number; default_threads: number };
  memory: { total_bytes: number; free_bytes: number; budget_bytes: number; in_use_by_models_bytes: number };
  accelerator: string;
  engines: { name: string; format: string; node_llama_cpp: string; platform: string; source: string }[];
  server: { bound_host: string; loopback_only: boolean; cors_origins: string[]; allowed_hosts: string[]; auth_required: boolean };
}

export interface Runtime {
  name: string;
  installed: boolean;
  up_to_date: boolean;
  device: string | null;
  pinned: Record<string, string>;
  packages: Record<string, string>;
}

export interface Activity {
  time: string;
  memory_budget_bytes: number;
  models: { id: string; engine: string; loaded: boolean; memory_bytes: number | null; active_requests: number; queued_requests: number; requests_total: number; generated_tokens_total: number }[];
  recent_errors: { time: string; source: string; model: string | null; message: string; status: number | null }[];
}

export interface ApiKey {
  id: string;
  name: string | null;
  scope: "admin" | "inference";
  prefix: string;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

export interface List<T> {
  data: T[];
}

/** GET /admin/v1/engines */
export interface Engines {
  selected: string;
  manifest_updated: string | null;
  data: {
    version: string;
    llama_cpp: string | null;
    installed: boolean;
    embedded: boolean;
    selected: boolean;
    compatible: boolean;
    available: boolean;
    build: { ref: string; commit: string } | null;
  }[];
}

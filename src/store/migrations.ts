// Versioned schema migrations, embedded in the executable (no migration files to ship). Each runs
// once, in a transaction, in order; PRAGMA user_version records the last one applied, so a newer
// binary upgrades an older database on start and an older binary refuses a newer database.

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const migrations: Migration[] = [
  {
    version: 1,
    description: "models, downloads, load history, api keys",
    sql: `
      CREATE TABLE models (
        id TEXT PRIMARY KEY,
        format TEXT NOT NULL CHECK (format IN ('gguf', 'mlx')),
        path TEXT NOT NULL,
        source_repo TEXT,
        revision TEXT,
        files TEXT NOT NULL DEFAULT '[]',
        size_bytes INTEGER NOT NULL DEFAULT 0,
        architecture TEXT,
        quantization TEXT,
        declared_context INTEGER,
        load_defaults TEXT NOT NULL DEFAULT '{}',
        origin TEXT NOT NULL CHECK (origin IN ('download', 'import')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE downloads (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        repo TEXT NOT NULL,
        revision TEXT NOT NULL,
        files TEXT NOT NULL DEFAULT '[]',
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        bytes_done INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        model_id TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE INDEX downloads_state ON downloads(state);
      CREATE TABLE load_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model_id TEXT NOT NULL,
        event TEXT NOT NULL,
        context_length INTEGER,
        parallel INTEGER,
        threads INTEGER,
        memory_bytes INTEGER,
        duration_ms INTEGER,
        error TEXT,
        at INTEGER NOT NULL
      );
      CREATE INDEX load_history_model ON load_history(model_id, at);
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT,
        scope TEXT NOT NULL CHECK (scope IN ('admin', 'inference')),
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
      );
    `,
  },
  {
    version: 2,
    description: "model aliases; a note on downloads (which quant was chosen and why)",
    sql: `
      ALTER TABLE models ADD COLUMN aliases TEXT NOT NULL DEFAULT '[]';
      ALTER TABLE downloads ADD COLUMN note TEXT;
    `,
  },
  {
    version: 3,
    description: "context probe results",
    sql: `
      CREATE TABLE context_probes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model_id TEXT NOT NULL,
        model_digest TEXT NOT NULL,
        engine_version TEXT NOT NULL,
        kv_cache_type TEXT NOT NULL,
        machine TEXT NOT NULL,
        declared_context INTEGER,
        tested_context INTEGER NOT NULL,
        memory_bytes INTEGER,
        decided_by TEXT,
        reason TEXT,
        steps TEXT NOT NULL DEFAULT '[]',
        duration_ms INTEGER NOT NULL,
        tested_at INTEGER NOT NULL
      );
      CREATE INDEX context_probes_key ON context_probes(model_digest, kv_cache_type, machine, tested_at);
    `,
  },
  {
    version: 4,
    description: "installed runtimes (the MLX Python environment)",
    sql: `
      CREATE TABLE runtimes (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        python_path TEXT NOT NULL,
        python_version TEXT NOT NULL,
        packages TEXT NOT NULL DEFAULT '{}',
        uv_version TEXT,
        device TEXT,
        installed_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        verified_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 5,
    description: "model-name routes set through the admin API",
    sql: `
      CREATE TABLE routes (
        name TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 6,
    description: "stored responses of the OpenAI Responses API (previous_response_id)",
    sql: `
      CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        response TEXT NOT NULL,
        input TEXT NOT NULL
      );
      CREATE INDEX responses_created ON responses(created_at);
    `,
  },
  {
    version: 7,
    description: "peers added through the admin API",
    sql: `
      CREATE TABLE peers (
        name TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        api_key TEXT,
        updated_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 8,
    description: "which peer holds a stored response a peer answered",
    sql: `
      CREATE TABLE peer_responses (
        id TEXT PRIMARY KEY,
        peer TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX peer_responses_created ON peer_responses(created_at);
    `,
  },
  {
    version: 9,
    description: "what the llama.cpp engine learned about model files: trial loads passed, memory estimates",
    sql: `
      CREATE TABLE trial_loads (
        path TEXT NOT NULL,
        engine_version TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ms REAL NOT NULL,
        inode INTEGER NOT NULL,
        tested_at INTEGER NOT NULL,
        PRIMARY KEY (path, engine_version)
      );
      CREATE TABLE memory_estimates (
        path TEXT NOT NULL,
        engine_version TEXT NOT NULL,
        settings TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ms REAL NOT NULL,
        inode INTEGER NOT NULL,
        model_bytes INTEGER NOT NULL,
        context_bytes INTEGER NOT NULL,
        gpu_bytes INTEGER NOT NULL,
        estimated_at INTEGER NOT NULL,
        PRIMARY KEY (path, engine_version, settings)
      );
    `,
  },
];

import { Database } from "bun:sqlite";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { log } from "../log.ts";
import { type Migration, migrations as allMigrations } from "./migrations.ts";
import * as schema from "./schema.ts";

export type Db = BunSQLiteDatabase<typeof schema> & { $client: Database };

export class DatabaseTooNewError extends Error {
  override name = "DatabaseTooNewError";
}

/** Applies pending migrations in order, each in its own transaction with its version bump. */
export function migrate(sqlite: Database, migrations: Migration[] = allMigrations): number {
  const current = (sqlite.query("PRAGMA user_version").get() as { user_version: number }).user_version;
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new DatabaseTooNewError(`the database is at schema version ${current}, newer than this lmx understands (${latest}); update lmx`);
  }
  for (const m of migrations) {
    if (m.version <= current) continue;
    sqlite.transaction(() => {
      sqlite.run(m.sql);
      // PRAGMA takes no bound parameters; the version is our own integer.
      sqlite.run(`PRAGMA user_version = ${Math.trunc(m.version)}`);
    })();
    log.info("database migrated", { version: m.version, change: m.description });
  }
  return latest;
}

/**
 * Opens $LMX_HOME/lmx.db in WAL mode: readers never block the writer, and a crash (even kill -9)
 * leaves the last committed transaction intact.
 */
export function openDb(path: string, migrations?: Migration[]): Db {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const sqlite = new Database(path, { create: true, strict: true });
  sqlite.run("PRAGMA journal_mode = WAL");
  sqlite.run("PRAGMA synchronous = NORMAL");
  sqlite.run("PRAGMA foreign_keys = ON");
  sqlite.run("PRAGMA busy_timeout = 5000");
  migrate(sqlite, migrations);
  return drizzle({ client: sqlite, schema }) as Db;
}

import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseTooNewError, migrate, openDb } from "../src/store/db.ts";
import { migrations } from "../src/store/migrations.ts";
import { LoadRecordStore } from "../src/models/load-records.ts";
import { ModelRegistry } from "../src/models/registry.ts";

const tempDb = () => join(mkdtempSync(join(tmpdir(), "lmx-db-")), "lmx.db");

describe("database", () => {
  test("WAL mode and the latest schema on a new database", () => {
    const db = openDb(tempDb());
    expect((db.$client.query("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode).toBe("wal");
    expect((db.$client.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(migrations.at(-1)!.version);
    db.$client.close();
  });

  test("a database written by an older lmx is migrated and keeps its data", () => {
    const path = tempDb();
    // What version 1 of lmx left behind.
    const old = new Database(path);
    migrate(old, migrations.slice(0, 1));
    old.run("INSERT INTO models (id, format, path, origin, created_at, updated_at) VALUES ('m1', 'gguf', '/x/m1.gguf', 'download', 1, 1)");
    old.run("INSERT INTO downloads (id, spec, repo, revision, state, created_at, updated_at) VALUES ('d1', 'a/b', 'a/b', 'main', 'running', 1, 1)");
    old.close();

    const db = openDb(path);
    const m = new ModelRegistry(db).get("m1")!;
    expect(m.path).toBe("/x/m1.gguf");
    expect(m.aliases).toEqual([]);
    const d = db.$client.query("SELECT state, note FROM downloads WHERE id = 'd1'").get() as { state: string; note: string | null };
    expect(d).toEqual({ state: "running", note: null });
    db.$client.close();
  });

  test("a database from a newer lmx is refused, not damaged", () => {
    const path = tempDb();
    const future = new Database(path);
    future.run("PRAGMA user_version = 999");
    future.close();
    expect(() => openDb(path)).toThrow(DatabaseTooNewError);
  });

  test("a failing migration leaves the database at the previous version", () => {
    const path = tempDb();
    const broken = [...migrations, { version: 99, description: "broken", sql: "CREATE TABLE t (x); THIS IS NOT SQL;" }];
    expect(() => openDb(path, broken)).toThrow();
    const db = new Database(path);
    expect((db.query("PRAGMA user_version").get() as { user_version: number }).user_version).toBe(migrations.at(-1)!.version);
    expect(db.query("SELECT name FROM sqlite_master WHERE name = 't'").get()).toBeNull();
    db.close();
  });
});

describe("the llama.cpp engine's load records", () => {
  const file = { path: "/m/a.gguf", size: 100, mtimeMs: 1700000000123.5, inode: 42 };
  const estimate = { modelBytes: 1, contextBytes: 2, gpuBytes: 0 };

  test("hold for one version of the file and one engine version", () => {
    const records = new LoadRecordStore(openDb(tempDb()));
    expect(records.trialPassed(file, "e1")).toBe(false);
    records.rememberTrial(file, "e1");
    records.rememberEstimate(file, "e1", "[256,4]", estimate);
    expect(records.trialPassed(file, "e1")).toBe(true);
    expect(records.estimate(file, "e1", "[256,4]")).toEqual(estimate);
    expect(records.estimate(file, "e1", "[512,4]")).toBeUndefined();
    expect(records.trialPassed(file, "e2")).toBe(false);
    expect(records.estimate(file, "e2", "[256,4]")).toBeUndefined();
    for (const other of [{ ...file, size: 101 }, { ...file, mtimeMs: file.mtimeMs + 1 }, { ...file, inode: 43 }]) {
      expect(records.trialPassed(other, "e1")).toBe(false);
      expect(records.estimate(other, "e1", "[256,4]")).toBeUndefined();
    }
    // A new version of the file replaces the old one's record.
    records.rememberTrial({ ...file, size: 101 }, "e1");
    expect(records.trialPassed(file, "e1")).toBe(false);
  });

  test("keep at most 1000 rows each, dropping the oldest", () => {
    const db = openDb(tempDb());
    const records = new LoadRecordStore(db);
    for (let i = 0; i < 1005; i++) {
      records.rememberTrial({ ...file, path: `/m/${i}.gguf` }, "e1");
      records.rememberEstimate({ ...file, path: `/m/${i}.gguf` }, "e1", "s", estimate);
    }
    const count = (table: string) => (db.$client.query(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    expect(count("trial_loads")).toBe(1000);
    expect(count("memory_estimates")).toBe(1000);
    expect(records.trialPassed({ ...file, path: "/m/1004.gguf" }, "e1")).toBe(true);
  });
});

import { and, eq, sql } from "drizzle-orm";
import type { FileVersion, LoadRecords } from "../engines/llama/load-records.ts";
import type { MemoryEstimate } from "../engines/types.ts";
import type { Db } from "../store/db.ts";
import { memoryEstimates, trialLoads } from "../store/schema.ts";

/** Rows kept per table; the oldest go first beyond this (model files × engine versions × settings). */
const MAX_ROWS = 1000;

const sameVersion = (row: { size: number; mtimeMs: number; inode: number }, file: FileVersion) =>
  row.size === file.size && row.mtimeMs === file.mtimeMs && row.inode === file.inode;

/** The llama.cpp engine's load records (src/engines/llama/load-records.ts) in SQLite. */
export class LoadRecordStore implements LoadRecords {
  constructor(private readonly db: Db) {}

  trialPassed(file: FileVersion, engineVersion: string): boolean {
    const row = this.db.select().from(trialLoads)
      .where(and(eq(trialLoads.path, file.path), eq(trialLoads.engineVersion, engineVersion))).get();
    return row !== undefined && sameVersion(row, file);
  }

  rememberTrial(file: FileVersion, engineVersion: string): void {
    const version = { size: file.size, mtimeMs: file.mtimeMs, inode: file.inode, testedAt: Date.now() };
    this.db.transaction((tx) => {
      tx.insert(trialLoads).values({ path: file.path, engineVersion, ...version })
        .onConflictDoUpdate({ target: [trialLoads.path, trialLoads.engineVersion], set: version }).run();
      tx.run(sql`DELETE FROM trial_loads WHERE rowid NOT IN (SELECT rowid FROM trial_loads ORDER BY tested_at DESC, rowid DESC LIMIT ${MAX_ROWS})`);
    });
  }

  estimate(file: FileVersion, engineVersion: string, settings: string): MemoryEstimate | undefined {
    const row = this.db.select().from(memoryEstimates)
      .where(and(eq(memoryEstimates.path, file.path), eq(memoryEstimates.engineVersion, engineVersion), eq(memoryEstimates.settings, settings))).get();
    if (row === undefined || !sameVersion(row, file)) return undefined;
    return { modelBytes: row.modelBytes, contextBytes: row.contextBytes, gpuBytes: row.gpuBytes };
  }

  rememberEstimate(file: FileVersion, engineVersion: string, settings: string, estimate: MemoryEstimate): void {
    const values = { size: file.size, mtimeMs: file.mtimeMs, inode: file.inode, ...estimate, estimatedAt: Date.now() };
    this.db.transaction((tx) => {
      tx.insert(memoryEstimates).values({ path: file.path, engineVersion, settings, ...values })
        .onConflictDoUpdate({ target: [memoryEstimates.path, memoryEstimates.engineVersion, memoryEstimates.settings], set: values }).run();
      tx.run(sql`DELETE FROM memory_estimates WHERE rowid NOT IN (SELECT rowid FROM memory_estimates ORDER BY estimated_at DESC, rowid DESC LIMIT ${MAX_ROWS})`);
    });
  }
}

import { and, eq, sql } from "drizzle-orm";
import type { TrialFile, TrialRecords } from "../engines/llama/trial-load.ts";
import type { Db } from "../store/db.ts";
import { trialLoads } from "../store/schema.ts";

/** Rows kept: one per model file and engine version; the oldest go first beyond this. */
const MAX_ROWS = 1000;

/** Passed trial loads in SQLite, so a restarted server loads a proven file without a trial child. */
export class TrialLoadStore implements TrialRecords {
  constructor(private readonly db: Db) {}

  passed(file: TrialFile, engineVersion: string): boolean {
    const row = this.db.select().from(trialLoads)
      .where(and(eq(trialLoads.path, file.path), eq(trialLoads.engineVersion, engineVersion))).get();
    return row !== undefined && row.size === file.size && row.mtimeMs === file.mtimeMs && row.inode === file.inode;
  }

  remember(file: TrialFile, engineVersion: string): void {
    const row = { path: file.path, engineVersion, size: file.size, mtimeMs: file.mtimeMs, inode: file.inode, testedAt: Date.now() };
    this.db.transaction((tx) => {
      tx.insert(trialLoads).values(row)
        .onConflictDoUpdate({ target: [trialLoads.path, trialLoads.engineVersion], set: { size: row.size, mtimeMs: row.mtimeMs, inode: row.inode, testedAt: row.testedAt } })
        .run();
      tx.run(sql`DELETE FROM trial_loads WHERE rowid NOT IN (SELECT rowid FROM trial_loads ORDER BY tested_at DESC LIMIT ${MAX_ROWS})`);
    });
  }
}

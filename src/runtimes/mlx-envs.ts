// Each MLX environment folder records what it holds once it has passed its check (runtime.json):
// the versions installed, what the user asked for, the interpreter and the device. The database
// names the folder in use; the record lets LMX switch back to the previous folder (rollback)
// without trusting anything but a folder it verified itself.

import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";

const RECORD = "runtime.json";

export const EnvRecord = v.object({
  pythonPath: v.string(),
  pythonVersion: v.string(),
  packages: v.record(v.string(), v.string()),
  /** What was asked for instead of the pins (`mlx-lm`: a version or git+URL@REF); empty for the pins. */
  requested: v.record(v.string(), v.string()),
  device: v.nullable(v.string()),
  uvVersion: v.nullable(v.string()),
  verifiedAt: v.number(),
});
export type EnvRecord = v.InferOutput<typeof EnvRecord>;

export interface EnvFolder {
  path: string;
  record: EnvRecord;
}

export function writeEnvRecord(folder: string, record: EnvRecord): void {
  const tmp = join(folder, `${RECORD}.tmp`);
  writeFileSync(tmp, JSON.stringify(record, null, 2) + "\n");
  renameSync(tmp, join(folder, RECORD));
}

export function readEnvRecord(folder: string): EnvRecord | undefined {
  try {
    const parsed = v.safeParse(EnvRecord, JSON.parse(readFileSync(join(folder, RECORD), "utf8")));
    return parsed.success && existsSync(parsed.output.pythonPath) ? parsed.output : undefined;
  } catch {
    return undefined;
  }
}

/** Verified folders under `envs` other than `current`, newest check first. */
export function otherEnvs(envs: string, current: string | undefined): EnvFolder[] {
  if (!existsSync(envs)) return [];
  const found: EnvFolder[] = [];
  for (const name of readdirSync(envs)) {
    const path = join(envs, name);
    if (path === current) continue;
    const record = readEnvRecord(path);
    if (record) found.push({ path, record });
  }
  return found.sort((a, b) => b.record.verifiedAt - a.record.verifiedAt);
}

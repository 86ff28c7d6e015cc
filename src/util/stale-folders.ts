// Temp folders carry their creator's pid in their name. One whose process is gone, and that nobody
// has touched for a while, was left by a crash (SIGKILL, power loss) and can go. The age matters
// too: when LMX_HOME is shared between containers, a pid that is dead here may be a live process
// in another PID namespace.

import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";

/** Whether a process with this pid exists (EPERM: it does, but belongs to someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: unknown }).code === "EPERM";
  }
}

/**
 * Deletes the entries of `parent` whose name matches `pattern` (its first group: the creator's
 * pid) when that process is gone and the entry is older than `staleAfterMs`. Best effort: a
 * missing folder, or another process removing the same entry, is not an error.
 */
export async function removeStaleFolders(parent: string, pattern: RegExp, staleAfterMs: number): Promise<void> {
  for (const entry of await readdir(parent).catch(() => [] as string[])) {
    const pid = Number(pattern.exec(entry)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    const path = join(parent, entry);
    try {
      if (Date.now() - (await stat(path)).mtimeMs < staleAfterMs) continue;
      await rm(path, { recursive: true, force: true });
    } catch {
      // Gone already, or being removed by someone else.
    }
  }
}

import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { processAlive, removeStaleFolders } from "../../src/util/stale-folders.ts";

describe("folders left by crashed processes", () => {
  test("only an old folder of a process that is gone is removed", async () => {
    const root = mkdtempSync(join(tmpdir(), "lmx-stale-"));
    try {
      const exited = Bun.spawnSync(["true"]).pid;
      expect(processAlive(exited)).toBe(false);
      expect(processAlive(process.pid)).toBe(true);
      const hourAgo = new Date(Date.now() - 3_600_000);
      const make = (name: string, old: boolean) => {
        mkdirSync(join(root, name, "inside"), { recursive: true });
        if (old) utimesSync(join(root, name), hourAgo, hourAgo);
      };
      make(`.build-${exited}-ab12`, true); // dead and old: goes
      make(`.build-${exited}-cd34`, false); // dead but fresh: may be a live process in another PID namespace
      make(`.build-${process.pid}-ef56`, true); // this process
      make(`.build-${process.ppid}-0a0b`, true); // alive
      make("keep-me", true); // not a temp folder
      await removeStaleFolders(root, /^\.build-(\d+)-[0-9a-f]+$/, 10 * 60_000);
      expect(readdirSync(root).sort()).toEqual([`.build-${exited}-cd34`, `.build-${process.pid}-ef56`, `.build-${process.ppid}-0a0b`, "keep-me"].sort());
      await removeStaleFolders(join(root, "missing"), /^x-(\d+)$/, 0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

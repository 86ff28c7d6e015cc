// KeyStore.hasKeys keeps its answer between requests; it must still change the moment a key is
// created or revoked, here or by another process on the same database (a second server on the
// same LMX home).
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KeyStore } from "../../src/auth/keys.ts";
import { configureLog } from "../../src/log.ts";
import { openDb } from "../../src/store/db.ts";

configureLog({ level: "error" });
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dbFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "lmx-keys-"));
  dirs.push(dir);
  return join(dir, "lmx.db");
}

describe("whether authentication is on", () => {
  test("a key created or revoked through this store turns it on and off at once", () => {
    const keys = new KeyStore(openDb(dbFile()), []);
    expect(keys.hasKeys()).toBe(false);
    const { info } = keys.create("admin", "ops");
    expect(keys.hasKeys()).toBe(true);
    expect(keys.hasKeys()).toBe(true);
    keys.revoke(info.id);
    expect(keys.hasKeys()).toBe(false);
  });

  test("a key another connection to the same database creates or revokes changes it too", () => {
    const file = dbFile();
    const here = new KeyStore(openDb(file), []);
    const there = new KeyStore(openDb(file), []);
    expect(here.hasKeys()).toBe(false);
    const { info } = there.create("admin");
    expect(here.hasKeys()).toBe(true);
    there.revoke(info.id);
    expect(here.hasKeys()).toBe(false);
  });

  test("keys given on the command line keep it on", () => {
    const keys = new KeyStore(openDb(dbFile()), ["lmx-static-key"]);
    expect(keys.hasKeys()).toBe(true);
    expect(keys.verify("lmx-static-key")).toBe("admin");
  });
});

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { ENGINE_MARKER_FILE, engineDir, ensureEngineExtracted, extractEngineArchive } from "../src/engines/llama/bundle.ts";
import { configureLog } from "../src/log.ts";
import { packTarGz, type TarEntry } from "../src/util/tar.ts";

const REPO = resolve(import.meta.dir, "..");
const BUNDLE_MODULE = join(REPO, "src/engines/llama/bundle.ts");
const VERSION = "0.0.0-test";
const TARGET = "linux-x64";

const scratch = mkdtempSync(join(tmpdir(), "lmx-engine-bundle-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let archivePath = "";
let archiveSha = "";

function sha256(bytes: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
}

/** A small stand-in for the real bundle: a node_modules tree with enough bytes to take a moment. */
function fakeBundle(): TarEntry[] {
  const text = (value: string): Uint8Array => new TextEncoder().encode(value);
  const entries: TarEntry[] = [
    { type: "file", path: "node_modules/node-llama-cpp/package.json", data: text('{"name":"node-llama-cpp","version":"0.0.0-test","type":"module"}') },
    { type: "file", path: "node_modules/node-llama-cpp/dist/index.js", data: text("export const answer = 42;\n") },
    { type: "file", path: "node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/lib.so", data: crypto.getRandomValues(new Uint8Array(4 * 1024 * 1024)), mode: 0o755 },
  ];
  for (let i = 0; i < 300; i++) {
    entries.push({ type: "file", path: `node_modules/dep-${i % 30}/lib/file-${i}.js`, data: text(`module.exports = ${i};\n`) });
  }
  return entries;
}

function newHome(): string {
  return mkdtempSync(join(scratch, "home-"));
}

function leftovers(dest: string): string[] {
  const parent = dirname(dest);
  return existsSync(parent) ? readdirSync(parent).filter((name) => name.startsWith(`.${basename(dest)}.`)) : [];
}

/** A pid that certainly belonged to a process which has exited. */
async function deadPid(): Promise<number> {
  const proc = Bun.spawn([process.execPath, "-e", "0"]);
  await proc.exited;
  return proc.pid;
}

beforeAll(async () => {
  configureLog({ level: process.env.LMX_TEST_LOG_LEVEL ?? "warn" });
  const archive = await packTarGz(fakeBundle(), 1);
  archivePath = join(scratch, `engine-llama.cpp-${VERSION}-${TARGET}.tar.gz`);
  await Bun.write(archivePath, archive);
  archiveSha = sha256(archive);
});

describe("engine bundle extraction", () => {
  test("extracts into LMX_HOME and reuses the folder on the next call", async () => {
    const dest = engineDir(newHome(), VERSION, TARGET);
    const first = await extractEngineArchive({ archive: archivePath, sha256: archiveSha, dest, nodeLlamaCppVersion: VERSION, target: TARGET });
    expect(first).toBe(dest);
    expect(readFileSync(join(dest, "node_modules/node-llama-cpp/dist/index.js"), "utf8")).toContain("42");
    const marker = JSON.parse(readFileSync(join(dest, ENGINE_MARKER_FILE), "utf8")) as { sha256: string; target: string };
    expect(marker).toMatchObject({ sha256: archiveSha, target: TARGET });

    // A re-extraction would replace the folder and lose this file.
    writeFileSync(join(dest, "sentinel"), "still here");
    const second = await extractEngineArchive({ archive: Bun.file(archivePath), sha256: archiveSha, dest });
    expect(second).toBe(dest);
    expect(readFileSync(join(dest, "sentinel"), "utf8")).toBe("still here");
    expect(leftovers(dest)).toEqual([]);
  });

  test("the loser of a rename race uses the winner's folder", async () => {
    const dest = engineDir(newHome(), VERSION, TARGET);
    // Both calls see no marker before either finishes, so both unpack and race on the rename.
    const results = await Promise.all([
      extractEngineArchive({ archive: archivePath, sha256: archiveSha, dest }),
      extractEngineArchive({ archive: archivePath, sha256: archiveSha, dest }),
    ]);
    expect(results).toEqual([dest, dest]);
    expect(existsSync(join(dest, ENGINE_MARKER_FILE))).toBe(true);
    expect(leftovers(dest)).toEqual([]);
  });

  test("two processes extracting at once both succeed and agree", async () => {
    const home = newHome();
    const dest = engineDir(home, VERSION, TARGET);
    const go = join(home, "go");
    // Each child signals it is ready, then waits for "go" so their extractions overlap.
    const child = `
      import { existsSync, writeFileSync, readFileSync } from "node:fs";
      import { extractEngineArchive, ENGINE_MARKER_FILE } from ${JSON.stringify(BUNDLE_MODULE)};
      const { T_ARCHIVE, T_SHA, T_DEST, T_GO } = process.env;
      writeFileSync(T_GO + ".ready-" + process.pid, "");
      while (!existsSync(T_GO)) await Bun.sleep(2);
      const dest = await extractEngineArchive({ archive: T_ARCHIVE, sha256: T_SHA, dest: T_DEST });
      const marker = JSON.parse(readFileSync(dest + "/" + ENGINE_MARKER_FILE, "utf8"));
      console.log(JSON.stringify({ dest, sha256: marker.sha256 }));
    `;
    const env = { ...process.env, T_ARCHIVE: archivePath, T_SHA: archiveSha, T_DEST: dest, T_GO: go };
    const procs = [0, 1].map(() => Bun.spawn([process.execPath, "-e", child], { cwd: REPO, env, stdout: "pipe", stderr: "pipe" }));
    const deadline = Date.now() + 30_000;
    while (readdirSync(home).filter((name) => name.startsWith("go.ready-")).length < 2) {
      if (Date.now() > deadline) throw new Error("child processes did not start");
      await Bun.sleep(5);
    }
    writeFileSync(go, "");
    const outputs = await Promise.all(
      procs.map(async (proc) => {
        const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
        expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
        return JSON.parse(stdout.trim()) as { dest: string; sha256: string };
      }),
    );
    expect(outputs).toEqual([
      { dest, sha256: archiveSha },
      { dest, sha256: archiveSha },
    ]);
    expect(readFileSync(join(dest, "node_modules/node-llama-cpp/dist/index.js"), "utf8")).toContain("42");
    expect(leftovers(dest)).toEqual([]);
  });

  test("a corrupted archive fails with a clear error and leaves no folder", async () => {
    const bytes = new Uint8Array(readFileSync(archivePath));
    bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] ?? 0) ^ 0xff;
    const corruptPath = join(scratch, "corrupt.tar.gz");
    writeFileSync(corruptPath, bytes);
    const dest = engineDir(newHome(), VERSION, TARGET);
    await expect(extractEngineArchive({ archive: corruptPath, sha256: archiveSha, dest })).rejects.toThrow(
      /llama\.cpp engine bundle is corrupted: sha256 [0-9a-f]{64} does not match the expected [0-9a-f]{64}/,
    );
    expect(existsSync(dest)).toBe(false);
    expect(leftovers(dest)).toEqual([]);
  });

  test("an archive that matches its hash but cannot be unpacked leaves no folder", async () => {
    const garbage = crypto.getRandomValues(new Uint8Array(4096));
    const garbagePath = join(scratch, "garbage.tar.gz");
    writeFileSync(garbagePath, garbage);
    const dest = engineDir(newHome(), VERSION, TARGET);
    await expect(extractEngineArchive({ archive: garbagePath, sha256: sha256(garbage), dest })).rejects.toThrow(
      /cannot extract the llama\.cpp engine to /,
    );
    expect(existsSync(dest)).toBe(false);
    expect(leftovers(dest)).toEqual([]);
  });

  test("an archive with an escaping entry is refused and nothing lands outside", async () => {
    const evil = await packTarGz([
      { type: "file", path: "node_modules/ok.js", data: new Uint8Array(1) },
      { type: "file", path: "../../escaped.txt", data: new Uint8Array(1) },
    ]);
    const evilPath = join(scratch, "evil.tar.gz");
    writeFileSync(evilPath, evil);
    const home = newHome();
    const dest = engineDir(home, VERSION, TARGET);
    await expect(extractEngineArchive({ archive: evilPath, sha256: sha256(evil), dest })).rejects.toThrow(/refusing tar entry/);
    expect(existsSync(dest)).toBe(false);
    expect(leftovers(dest)).toEqual([]);
    expect(existsSync(join(home, "engines", "escaped.txt"))).toBe(false);
    expect(existsSync(join(home, "escaped.txt"))).toBe(false);
  });

  test("temp folders left by crashed runs do not break the next start", async () => {
    const dest = engineDir(newHome(), VERSION, TARGET);
    const pid = await deadPid();
    const leftover = (suffix: string): string => {
      const dir = join(dirname(dest), `.${basename(dest)}.tmp-${pid}-${suffix}`);
      mkdirSync(join(dir, "node_modules", "node-llama-cpp"), { recursive: true });
      writeFileSync(join(dir, "node_modules", "node-llama-cpp", "half-written.js"), "export const x =");
      return dir;
    };
    const old = leftover("0badc0de");
    const anHourAgo = new Date(Date.now() - 60 * 60 * 1000);
    utimesSync(old, anHourAgo, anHourAgo);
    // A recent one might be a live extraction in another PID namespace, so it is left alone.
    const recent = leftover("0dd0beef");

    await extractEngineArchive({ archive: archivePath, sha256: archiveSha, dest });
    expect(existsSync(join(dest, ENGINE_MARKER_FILE))).toBe(true);
    expect(readFileSync(join(dest, "node_modules/node-llama-cpp/dist/index.js"), "utf8")).toContain("42");
    expect(existsSync(old)).toBe(false);
    expect(leftovers(dest)).toEqual([basename(recent)]);
  });

  test("a folder without a matching marker is replaced", async () => {
    const dest = engineDir(newHome(), VERSION, TARGET);
    mkdirSync(join(dest, "node_modules"), { recursive: true });
    writeFileSync(join(dest, "node_modules", "stale.js"), "");
    writeFileSync(join(dest, ENGINE_MARKER_FILE), JSON.stringify({ sha256: "0".repeat(64) }));

    await extractEngineArchive({ archive: archivePath, sha256: archiveSha, dest });
    expect(existsSync(join(dest, "node_modules", "stale.js"))).toBe(false);
    expect(JSON.parse(readFileSync(join(dest, ENGINE_MARKER_FILE), "utf8")).sha256).toBe(archiveSha);
    expect(leftovers(dest)).toEqual([]);
  });

  test("running from source there is no embedded bundle to extract", async () => {
    await expect(ensureEngineExtracted(newHome())).rejects.toThrow(/carries no llama\.cpp engine bundle/);
  });
});

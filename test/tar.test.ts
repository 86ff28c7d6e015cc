import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  extractTar,
  extractTarGz,
  packTar,
  packTarGz,
  TarFormatError,
  TarUnsafeEntryError,
  unpackTar,
  type TarEntry,
} from "../src/util/tar.ts";

const scratch = mkdtempSync(join(tmpdir(), "lmx-tar-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let counter = 0;
function freshDir(): string {
  return join(scratch, `case-${++counter}`);
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

// 60 + 80 + 90 characters: too long for the name field, fits the ustar prefix/name split.
const PREFIX_PATH = `pkg/${"a".repeat(60)}/${"b".repeat(80)}/${"c".repeat(90)}.js`;
// Over 256 bytes with long segments: only a PAX header can carry it.
const PAX_PATH = `pkg/${`segment-${"x".repeat(60)}/`.repeat(5)}file-${"y".repeat(120)}.js`;
const LONG_TARGET = `${"t".repeat(70)}/${"u".repeat(70)}/target.js`;

const sample: TarEntry[] = [
  { type: "directory", path: "pkg", mode: 0o755 },
  { type: "file", path: "pkg/readme.txt", data: text("hello\n"), mode: 0o644 },
  { type: "file", path: "pkg/bin/run.sh", data: text("#!/bin/sh\necho hi\n"), mode: 0o755 },
  { type: "file", path: "pkg/secret", data: text("s"), mode: 0o600 },
  { type: "file", path: "pkg/empty", data: new Uint8Array(0), mode: 0o644 },
  { type: "file", path: PREFIX_PATH, data: text("prefix"), mode: 0o644 },
  { type: "file", path: PAX_PATH, data: text("pax"), mode: 0o644 },
  { type: "file", path: "pkg/ünïcödé.txt", data: text("utf8"), mode: 0o644 },
  { type: "symlink", path: "pkg/link", target: "readme.txt" },
  { type: "symlink", path: "pkg/up-link", target: "../pkg/readme.txt" },
  { type: "symlink", path: "pkg/long-link", target: LONG_TARGET },
];

describe("tar round trip", () => {
  test("packTar/unpackTar preserve paths, data, modes and symlinks", async () => {
    expect(PAX_PATH.length).toBeGreaterThan(256);
    const archive = await packTar(sample);
    expect(archive.byteLength % 512).toBe(0);
    const entries = await unpackTar(archive);
    expect(entries.map((e) => e.path)).toEqual(sample.map((e) => (e.type === "directory" ? `${e.path}/` : e.path)));
    for (const [i, entry] of entries.entries()) {
      const original = sample[i]!;
      expect(entry.type).toBe(original.type);
      if (entry.type === "file" && original.type === "file") {
        expect(Buffer.from(entry.data).equals(Buffer.from(original.data))).toBe(true);
        expect(entry.mode).toBe(original.mode);
      }
      if (entry.type === "symlink" && original.type === "symlink") expect(entry.target).toBe(original.target);
    }
  });

  test("extracts to disk with the archived modes, long paths and symlinks", async () => {
    const dest = freshDir();
    const result = await extractTar(await unpackTar(await packTar(sample)), dest);
    expect(result).toMatchObject({ files: 7, directories: 1, symlinks: 3 });
    expect(readFileSync(join(dest, "pkg/readme.txt"), "utf8")).toBe("hello\n");
    expect(statSync(join(dest, "pkg/bin/run.sh")).mode & 0o777).toBe(0o755);
    expect(statSync(join(dest, "pkg/secret")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dest, "pkg/empty")).size).toBe(0);
    expect(readFileSync(join(dest, PREFIX_PATH), "utf8")).toBe("prefix");
    expect(readFileSync(join(dest, PAX_PATH), "utf8")).toBe("pax");
    expect(readFileSync(join(dest, "pkg/ünïcödé.txt"), "utf8")).toBe("utf8");
    expect(lstatSync(join(dest, "pkg/link")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(dest, "pkg/link"))).toBe("readme.txt");
    expect(readFileSync(join(dest, "pkg/link"), "utf8")).toBe("hello\n");
    expect(readFileSync(join(dest, "pkg/up-link"), "utf8")).toBe("hello\n");
    expect(readlinkSync(join(dest, "pkg/long-link"))).toBe(LONG_TARGET);
  });

  test("streams a gzipped archive from a file, across chunk boundaries", async () => {
    // Random data does not compress, so the file spans many decompression chunks.
    const big = crypto.getRandomValues(new Uint8Array(3 * 1024 * 1024 + 123));
    const archivePath = join(scratch, "big.tar.gz");
    await Bun.write(archivePath, await packTarGz([...sample, { type: "file", path: "pkg/big.bin", data: big, mode: 0o644 }]));
    const dest = freshDir();
    const result = await extractTarGz(Bun.file(archivePath), dest);
    expect(result.files).toBe(8);
    expect(Buffer.from(readFileSync(join(dest, "pkg/big.bin"))).equals(Buffer.from(big))).toBe(true);
    expect(readFileSync(join(dest, PAX_PATH), "utf8")).toBe("pax");
  });

  // Interoperability with the system's tar is only checkable where one is installed (every Linux
  // and macOS machine, CI included, has it; a minimal container may not); our own round trips above
  // run everywhere.
  test.skipIf(Bun.which("tar") === null)("system tar reads our archives and we read its archives", async () => {
    const ours = join(scratch, "ours.tar");
    await Bun.write(ours, await packTar(sample));
    const listed = Bun.spawnSync(["tar", "-tf", ours]).stdout.toString().trim().split("\n");
    expect(listed).toContain(PAX_PATH);
    expect(listed).toContain(PREFIX_PATH);

    const source = freshDir();
    await extractTar(sample, source);
    const theirs = join(scratch, "theirs.tar");
    expect(Bun.spawnSync(["tar", "--format=posix", "-cf", theirs, "-C", source, "pkg"]).exitCode).toBe(0);
    const paths = (await unpackTar(new Uint8Array(readFileSync(theirs)))).map((e) => e.path);
    expect(paths).toContain(PAX_PATH);
    expect(paths).toContain("pkg/long-link");
  });
});

describe("tar safety", () => {
  const bad: Array<[string, TarEntry[]]> = [
    ["parent segment", [{ type: "file", path: "../evil.txt", data: text("x") }]],
    ["parent segment in the middle", [{ type: "file", path: "pkg/../../evil.txt", data: text("x") }]],
    ["absolute path", [{ type: "file", path: "/tmp/lmx-tar-evil.txt", data: text("x") }]],
    ["directory escaping", [{ type: "directory", path: "../evil-dir" }]],
    ["symlink escaping", [{ type: "symlink", path: "pkg/out", target: "../../evil.txt" }]],
    ["absolute symlink", [{ type: "symlink", path: "pkg/etc", target: "/etc" }]],
    [
      "writing through an archived symlink",
      [
        { type: "symlink", path: "pkg/dir", target: "." },
        { type: "file", path: "pkg/dir/evil.txt", data: text("x") },
      ],
    ],
    [
      "symlink chain that escapes physically",
      [
        { type: "symlink", path: "pkg/a", target: ".." },
        { type: "symlink", path: "pkg/b", target: "a/.." },
      ],
    ],
  ];

  for (const [name, entries] of bad) {
    test(`refuses ${name} and writes nothing outside`, async () => {
      const outer = freshDir();
      const dest = join(outer, "dest");
      const archive = await packTar(entries);
      const error = await extractTar(await unpackTar(archive), dest).then(() => undefined, (err: unknown) => err);
      expect(error).toBeInstanceOf(TarUnsafeEntryError);
      expect((error as Error).message).toMatch(/^refusing tar entry ".+": /);
      expect(readdirSync(outer)).toEqual(["dest"]);
      expect(existsSync(join(scratch, "evil.txt"))).toBe(false);
      expect(existsSync("/tmp/lmx-tar-evil.txt")).toBe(false);
    });
  }

  test("rejects truncated and corrupted archives", async () => {
    const archive = await packTar(sample);
    await expect(unpackTar(archive.subarray(0, 1024 + 100))).rejects.toThrow(TarFormatError);
    const corrupted = archive.slice();
    corrupted[10] = (corrupted[10] ?? 0) ^ 0xff;
    await expect(unpackTar(corrupted)).rejects.toThrow(/checksum/);
  });

  test("rejects hard links instead of skipping them", async () => {
    const archive = await packTar([{ type: "file", path: "a", data: text("x") }]);
    const block = archive.slice(0, 512);
    block[156] = "1".charCodeAt(0);
    // Recompute the checksum so only the type is "wrong".
    block.fill(0x20, 148, 156);
    const sum = block.reduce((acc, byte) => acc + byte, 0);
    block.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
    const withLink = new Uint8Array(512 * 3);
    withLink.set(block, 0);
    await expect(unpackTar(withLink)).rejects.toThrow(/hard link/);
  });
});

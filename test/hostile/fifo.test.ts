// Non-regular files named *.gguf (issue 15, item 6). Opening a FIFO blocks until a writer comes,
// i.e. for ever, and /dev/zero never ends, so import, the models folder scan and --model must
// skip them (with a warning and a reason) without ever opening them.

import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { fixtures } from "../fixtures/models.ts";
import { startTestServer } from "../helpers/server.ts";

const root = mkdtempSync(join(tmpdir(), "lmx-hostile-fifo-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function mkfifo(path: string): void {
  const r = spawnSync("mkfifo", [path]);
  if (r.status !== 0) throw new Error(`mkfifo ${path}: ${r.stderr.toString()}`);
}

/** A folder with a good model and every kind of non-regular *.gguf, with the reason each must be skipped for. */
function hostileFolder(name: string): { dir: string; bad: Map<string, RegExp> } {
  const dir = join(root, name);
  mkdirSync(dir);
  copyFileSync(fixtures.qwen2Tiny, join(dir, "good.gguf"));
  mkfifo(join(root, `${name}-target.fifo`));
  mkfifo(join(dir, "fifo.gguf"));
  symlinkSync(join(root, `${name}-target.fifo`), join(dir, "link-to-fifo.gguf"));
  symlinkSync(join(root, "missing.gguf"), join(dir, "dangling.gguf"));
  symlinkSync("/dev/zero", join(dir, "zero.gguf"));
  const bad = new Map([
    [join(dir, "fifo.gguf"), /^not a regular file: it is a FIFO$/],
    [join(dir, "link-to-fifo.gguf"), /^not a regular file: it is a symlink to a FIFO$/],
    [join(dir, "dangling.gguf"), /^not a regular file: it is a dangling symlink$/],
    [join(dir, "zero.gguf"), /^not a regular file: it is a symlink to a device$/],
  ]);
  return { dir, bad };
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms))]);

describe("FIFOs and other non-regular *.gguf files", () => {
  test("are skipped by import and the models folder, never opened, and the server keeps serving", async () => {
    const models = hostileFolder("models");
    const imports = hostileFolder("imports");
    await using srv = await startTestServer(["--models-dir", models.dir]);

    const list = await withTimeout(srv.request("/v1/models"), 10_000, "GET /v1/models");
    expect(list.status).toBe(200);
    const ids = ((await list.json()) as { data: { id: string }[] }).data.map((m) => m.id);
    expect(ids).toEqual(["good"]);

    // A request naming one of them finds no such model rather than opening it.
    const chatFifo = await withTimeout(srv.request("/v1/chat/completions", { method: "POST", json: { model: "fifo", messages: [{ role: "user", content: "Hi" }] } }), 10_000, "chat on fifo");
    expect(chatFifo.status).toBe(404);

    const imp = await withTimeout(srv.request("/admin/v1/import", { method: "POST", json: { paths: [imports.dir, join(imports.dir, "fifo.gguf")] } }), 10_000, "import");
    expect(imp.status).toBe(200);
    const result = (await imp.json()) as { imported: { path: string }[]; skipped: { path: string; reason: string }[] };
    expect(result.imported.map((m) => m.path)).toEqual([join(imports.dir, "good.gguf")]);
    for (const [path, reason] of imports.bad) {
      const s = result.skipped.find((x) => x.path === path);
      expect(s?.reason ?? `${path}: not skipped`).toMatch(reason);
    }
    // The FIFO named directly is skipped as well.
    expect(result.skipped.filter((x) => x.path === join(imports.dir, "fifo.gguf")).length).toBe(2);

    // Last: a normal chat still works.
    const chat = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "good", messages: [{ role: "user", content: "Hi" }], max_tokens: 3 } });
    expect(chat.status).toBe(200);
  }, 180_000);

  test("--model naming a FIFO or a dangling symlink is refused at start, not opened", async () => {
    const fifo = join(root, "flag.gguf");
    mkfifo(fifo);
    const dangling = join(root, "flag-dangling.gguf");
    symlinkSync(join(root, "nothing-here.gguf"), dangling);
    await expect(withTimeout(startTestServer(["--model", fifo]), 10_000, "start")).rejects.toThrow(/it is a FIFO/);
    await expect(withTimeout(startTestServer(["--model", dangling]), 10_000, "start")).rejects.toThrow(/it is a dangling symlink/);
  });
});

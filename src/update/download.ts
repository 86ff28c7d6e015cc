// Downloads a release artifact to a file, hashing while it streams, and accepts it only if the
// byte count and SHA-256 are exactly what the signed manifest says. A short, long or altered
// download is deleted and reported; the caller never sees an unverified file.

import { createHash } from "node:crypto";
import { open, rm } from "node:fs/promises";
import { UpdateError } from "../errors.ts";
import type { Artifact } from "./manifest.ts";

const IDLE_TIMEOUT_MS = 60_000;

export async function downloadVerified(url: string, dest: string, expected: Pick<Artifact, "size" | "sha256">): Promise<void> {
  const controller = new AbortController();
  let idle = setTimeout(() => controller.abort(new Error("no data for 60 s")), IDLE_TIMEOUT_MS);
  const file = await open(dest, "wx", 0o600);
  let ok = false;
  try {
    let res: Response;
    try {
      res = await fetch(url, { signal: controller.signal, redirect: "follow" });
    } catch (err) {
      throw new UpdateError(`cannot download ${url}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!res.ok || res.body === null) throw new UpdateError(`GET ${url} answered ${res.status} ${res.statusText}`);
    const hash = createHash("sha256");
    let received = 0;
    try {
      for await (const chunk of res.body) {
        received += chunk.byteLength;
        // Stop as soon as it is too long: a hostile server must not be able to fill the disk.
        if (received > expected.size) throw new UpdateError(`download of ${url} is larger than the ${expected.size} bytes the manifest lists`);
        hash.update(chunk);
        await file.write(chunk);
        clearTimeout(idle);
        idle = setTimeout(() => controller.abort(new Error("no data for 60 s")), IDLE_TIMEOUT_MS);
      }
    } catch (err) {
      if (err instanceof UpdateError) throw err;
      throw new UpdateError(`download of ${url} broke off after ${received} of ${expected.size} bytes: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (received !== expected.size) {
      throw new UpdateError(`download of ${url} is truncated: got ${received} of ${expected.size} bytes`);
    }
    const actual = hash.digest("hex");
    if (actual !== expected.sha256) {
      throw new UpdateError(`checksum mismatch for ${url}: sha256 ${actual}, the signed manifest says ${expected.sha256}`);
    }
    await file.sync();
    ok = true;
  } finally {
    clearTimeout(idle);
    await file.close();
    if (!ok) await rm(dest, { force: true });
  }
}

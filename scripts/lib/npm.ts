// npm access for the release build: prebuilt engine packages and Bun runtimes for other platforms
// come from the registry through the ordinary npm client (`npm view`, `npm pack`, `npm install`),
// and are cached under .cache/npm so a rebuild, or a second test run, needs no network.

import { existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { extractTarGz } from "../../src/util/tar.ts";

export class NpmError extends Error {
  override name = "NpmError";
}

async function npm(args: string[], cwd: string): Promise<string> {
  const proc = Bun.spawn(["npm", ...args], { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, npm_config_update_notifier: "false" } });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) {
    const detail = stderr.split("\n").filter((line) => /ERR!|error/i.test(line)).slice(0, 6).join("\n") || stderr.trim();
    throw new NpmError(`npm ${args.join(" ")} failed (${code}):\n${detail}`);
  }
  return stdout;
}

/** Whether `name@version` is published. Network errors are thrown, not reported as "missing". */
export async function npmVersionExists(name: string, version: string, cwd: string): Promise<boolean> {
  try {
    const out = await npm(["view", `${name}@${version}`, "version", "--json"], cwd);
    // npm prints nothing (exit 0) for a version range that matches nothing.
    return out.trim() !== "" && out.includes(version);
  } catch (err) {
    if (err instanceof NpmError && /E404|404 Not Found|No match found/i.test(err.message)) return false;
    throw err;
  }
}

function tarballName(name: string, version: string): string {
  return `${name.replace(/^@/, "").replace("/", "-")}-${version}.tgz`;
}

/**
 * The package's folder (the tarball's `package/`), downloaded with `npm pack` and unpacked under
 * `cacheDir` once. A folder only appears after a complete extraction (rename from a temp folder).
 */
export async function npmPackage(name: string, version: string, cacheDir: string): Promise<string> {
  const unpacked = join(cacheDir, "unpacked", `${name.replace("/", "+")}@${version}`);
  const packageDir = join(unpacked, "package");
  if (existsSync(join(packageDir, "package.json"))) return packageDir;
  const tarballs = join(cacheDir, "tarballs");
  await mkdir(tarballs, { recursive: true });
  const tarball = join(tarballs, tarballName(name, version));
  if (!existsSync(tarball)) {
    // npm checks the registry's integrity hash while downloading.
    await npm(["pack", `${name}@${version}`, "--pack-destination", tarballs, "--silent"], tarballs);
    if (!existsSync(tarball)) throw new NpmError(`npm pack ${name}@${version} did not produce ${tarball}`);
  }
  const temp = `${unpacked}.tmp-${process.pid}`;
  await rm(temp, { recursive: true, force: true });
  await extractTarGz(Bun.file(tarball), temp);
  await mkdir(join(cacheDir, "unpacked"), { recursive: true });
  await rm(unpacked, { recursive: true, force: true });
  await rename(temp, unpacked);
  return packageDir;
}

/**
 * A node_modules tree holding `name@version` and its production dependencies (no optional or peer
 * packages, no install scripts), for building an engine bundle from a node-llama-cpp version other
 * than the one this checkout has installed. Returns the folder that contains node_modules.
 */
export async function npmInstallTree(name: string, version: string, cacheDir: string): Promise<string> {
  const root = join(cacheDir, "trees", `${name.replace("/", "+")}@${version}`);
  const done = join(root, ".complete");
  if (existsSync(done)) return root;
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  await writeFile(join(root, "package.json"), `${JSON.stringify({ private: true, name: "lmx-engine-staging" })}\n`);
  await npm(
    ["install", `${name}@${version}`, "--save-exact", "--ignore-scripts", "--omit=optional", "--omit=peer", "--omit=dev", "--no-audit", "--no-fund", "--no-package-lock"],
    root,
  );
  await writeFile(done, `${new Date().toISOString()}\n`);
  return root;
}

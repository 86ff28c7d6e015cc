// Makes an Ed25519 release signing key pair.
//
//   bun run release:keygen -- --out ~/lmx-keys
//
// Writes lmx-release.key (private, mode 0600: keep it out of the repository, in a secret store
// or on the release machine only) and lmx-release.pub (public: passed to `bun run release` with
// --public-key, which builds it into the executable and install.sh). Refuses to overwrite a key.

import { existsSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { generateKeyPair } from "../src/update/signing.ts";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: { out: { type: "string" }, name: { type: "string", default: "lmx-release" } },
  strict: true,
});

if (values.out === undefined) {
  console.error("usage: bun run release:keygen -- --out DIR [--name lmx-release]");
  process.exit(2);
}
const dir = resolve(values.out);
const privatePath = join(dir, `${values.name}.key`);
const publicPath = join(dir, `${values.name}.pub`);
for (const path of [privatePath, publicPath]) {
  if (existsSync(path)) {
    console.error(`keygen: ${path} exists; refusing to overwrite a release key`);
    process.exit(1);
  }
}
await mkdir(dir, { recursive: true, mode: 0o700 });
const pair = generateKeyPair();
await writeFile(privatePath, pair.privatePem, { mode: 0o600, flag: "wx" });
await chmod(privatePath, 0o600);
await writeFile(publicPath, pair.publicPem, { mode: 0o644, flag: "wx" });
console.log(`key id ${pair.id}\n  private: ${privatePath} (keep secret, never commit)\n  public:  ${publicPath} (pass to bun run release --public-key)`);

// Tests never touch the user's real ~/.lmx.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

if (!process.env.LMX_HOME) process.env.LMX_HOME = mkdtempSync(join(tmpdir(), "lmx-test-home-"));

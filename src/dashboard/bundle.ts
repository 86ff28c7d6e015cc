// The dashboard's script: one bundle of src/dashboard/app, built with Bun's own bundler.
//
// Two ways to get it, so that neither a running server nor the executable needs a separate build
// step to stay current:
// - From source (`bun run src/cli/main.ts serve`, the tests): built in memory on first request and
//   cached for the life of the process, so an edit shows after a restart.
// - In the executable: scripts/build.ts builds it once (buildDashboardBundle), writes it next to
//   the binary as `lmx-dashboard.bundle` and hands it to `bun build --compile` as an extra
//   entrypoint. An unknown extension makes Bun embed the file as-is (a `.js` would be compiled as
//   code) and list it in Bun.embeddedFiles; the LMX_DASHBOARD_BUNDLE define names it. The sources
//   are then never read.
import { basename, join } from "node:path";

declare const LMX_DASHBOARD_BUNDLE: string | undefined;

export const DASHBOARD_BUNDLE_FILE = "lmx-dashboard.bundle";

const ENTRY = join(import.meta.dir, "app", "main.tsx");

/** The minified browser bundle of the dashboard (ES module, Preact included). */
export async function buildDashboardBundle(): Promise<string> {
  const result = await Bun.build({
    entrypoints: [ENTRY],
    target: "browser",
    format: "esm",
    minify: true,
    jsx: { runtime: "automatic", importSource: "preact" },
  });
  const output = result.outputs.find((o) => o.kind === "entry-point");
  if (!result.success || !output) throw new Error(`building the dashboard failed: ${result.logs.map(String).join("\n")}`);
  return output.text();
}

/** Files given to `bun build --compile` get a content hash before their extension. */
function findEmbedded(fileName: string): Blob | undefined {
  const dot = fileName.lastIndexOf(".");
  const stem = fileName.slice(0, dot);
  const ext = fileName.slice(dot);
  for (const file of Bun.embeddedFiles) {
    const name = (file as Blob & { name?: unknown }).name;
    if (typeof name !== "string") continue;
    const base = basename(name);
    if (base === fileName || (base.startsWith(`${stem}-`) && base.endsWith(ext))) return file;
  }
  return undefined;
}

let cached: Promise<string> | undefined;

/** The bundle this process serves: the embedded one in the executable, else built from source once. */
export function dashboardScript(): Promise<string> {
  if (!cached) {
    const embeddedName = typeof LMX_DASHBOARD_BUNDLE === "string" ? LMX_DASHBOARD_BUNDLE : undefined;
    if (embeddedName !== undefined) {
      const file = findEmbedded(embeddedName);
      cached = file ? file.text() : Promise.reject(new Error(`this lmx build names ${embeddedName} but does not embed it`));
    } else {
      cached = buildDashboardBundle();
    }
    // A failed build is not cached: the next request tries again.
    cached.catch(() => (cached = undefined));
  }
  return cached;
}

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseFlags, resolveSettings } from "../../src/config/resolve.ts";
import { serveSettings } from "../../src/config/settings.ts";
import { configureLog } from "../../src/log.ts";
import { startServer, type RunningServer } from "../../src/server.ts";
import { watched } from "../../src/util/watch.ts";

export interface TestServer extends AsyncDisposable {
  url: string;
  server: RunningServer;
  home: string;
  /** fetch relative to the server, JSON body when given an object. */
  request(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
}

/**
 * A real LMX server on a free loopback port with its own temporary LMX_HOME (or the given one, to
 * restart on the same state), configured through the same flags a user would pass. `await using`
 * stops it and removes the home it made.
 */
export async function startTestServer(args: string[], opts: { env?: NodeJS.ProcessEnv; home?: string } = {}): Promise<TestServer> {
  const owned = opts.home === undefined;
  const home = opts.home ?? mkdtempSync(join(tmpdir(), "lmx-test-"));
  configureLog({ level: process.env.LMX_TEST_LOG_LEVEL ?? "warn" });
  const config = resolveSettings(serveSettings, parseFlags(["--port", "0", "--threads", "1", ...args], serveSettings), opts.env ?? {}, { values: {}, models: {} });
  const server = await startServer(config, home, {}, opts.env ?? {});
  const url = server.url;
  return {
    url,
    server,
    home,
    request(path, init = {}) {
      const { json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (json !== undefined) headers.set("content-type", "application/json");
      // A request that hangs says so in the test output instead of only timing out the test.
      return watched(`${rest.method ?? "GET"} ${path}`, fetch(url + path, { ...rest, headers, body: json !== undefined ? JSON.stringify(json) : rest.body }), 20_000);
    },
    async [Symbol.asyncDispose]() {
      await server.stop();
      if (owned) rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Reads an SSE body into its data payloads (without the final [DONE]) and whether [DONE] came. */
export async function readSse(res: Response): Promise<{ events: unknown[]; done: boolean; raw: string }> {
  const raw = await res.text();
  const events: unknown[] = [];
  let done = false;
  for (const block of raw.split("\n\n")) {
    const line = block.trim();
    if (!line.startsWith("data: ")) continue;
    const data = line.slice(6);
    if (data === "[DONE]") done = true;
    else events.push(JSON.parse(data));
  }
  return { events, done, raw };
}

// The web dashboard end to end: headless Chromium (playwright-core, the system's Chromium) against a
// real LMX with the real engine and the local fake hub. One server, one browser and one phone-sized
// page (390 px) for the file; the tests run in order, each continuing from the last. Every view is
// checked for horizontal scroll and screenshotted to test-artifacts/screenshots/; any console
// error or request to another host fails the test it happens in.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Browser } from "playwright-core";
import { chromiumMissing, horizontalOverflow, launchBrowser, watchedPage, type WatchedPage } from "./helpers/browser.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";
import { demoRepos, startFakeHub, type FakeHub } from "./hub/fake-hub.ts";
import { ensureAgentModel } from "./fixtures/agent-model.ts";

const STORIES = resolve(import.meta.dir, "../../shared/models/stories260K.gguf");
const PHONE = 390;
// Skipped only off CI when no Chromium is installed; under CI chromiumMissing() throws instead.
const missing = chromiumMissing();
if (missing) console.warn(`skipping the dashboard browser tests: ${missing}`);

describe.skipIf(missing !== undefined)("dashboard in Chromium", () => {
  let hub: FakeHub;
  let srv: TestServer;
  let browser: Browser;
  let w: WatchedPage;
  const cache = mkdtempSync(join(tmpdir(), "lmx-dash-hf-"));

  beforeAll(async () => {
    hub = await startFakeHub({ repos: demoRepos() });
    const agent = await ensureAgentModel();
    srv = await startTestServer(["--model", STORIES, "--model", agent.gguf, "--hub-url", hub.url, "--hub-cache", cache]);
    browser = await launchBrowser();
    w = await watchedPage(browser, srv.url, PHONE);
  }, 60_000);

  afterAll(async () => {
    await w?.close();
    await browser?.close();
    await srv?.[Symbol.asyncDispose]();
    await hub?.stop();
    rmSync(cache, { recursive: true, force: true });
  });

  /** Opens a view by its URL, waits for `ready`, checks the width and keeps a screenshot. */
  async function view(name: string, ready: string): Promise<void> {
    const target = `${srv.url}/#/${name}`;
    // Going to the URL the page is on changes nothing: load it afresh instead.
    if (w.page.url() === target) await w.page.reload();
    else await w.page.goto(target);
    await w.page.locator(ready).first().waitFor({ timeout: 15_000 });
    expect(await horizontalOverflow(w.page)).toBe(0);
  }

  test("the page watcher records console errors, page errors and requests to other hosts", async () => {
    const probe = await watchedPage(browser, srv.url);
    try {
      await probe.page.goto(`${srv.url}/docs/json`);
      await probe.page.evaluate("console.error('boom'); setTimeout(() => { throw new Error('uncaught') }); fetch('http://example.com/x').catch(() => {})");
      const kinds = () => new Set(probe.problems.map((p) => p.split(":")[0]));
      for (let i = 0; i < 50 && kinds().size < 3; i++) await Bun.sleep(20);
      expect([...kinds()].sort()).toEqual(["console error", "page error", "request to another host"]);
    } finally {
      await probe.close();
    }
  });

  test("the models view lists the model and loads it with a context length", async () => {
    await view("models", '[data-model="stories260K"]');
    const card = w.page.locator('[data-model="stories260K"]');
    // Long enough for a reply to be stopped midway (stories260K writes until its context is full).
    await card.getByLabel("context length").fill("1024");
    await card.getByRole("button", { name: "Load", exact: true }).click();
    await card.locator('[data-state="ready"]').waitFor({ timeout: 30_000 });
    expect(await card.textContent()).toContain("loaded at 1,024");
    await w.screenshot("models");
    expect(w.problems).toEqual([]);
  }, 60_000);

  test("the playground's stop button ends a streaming reply", async () => {
    await w.page.goto(`${srv.url}/#/playground`);
    await w.page.locator('select[aria-label="model"] option', { hasText: "stories260K" }).waitFor({ state: "attached" });
    await w.page.getByLabel("model", { exact: true }).selectOption("stories260K");
    await w.page.getByLabel("message", { exact: true }).fill("Once upon a time");
    await w.page.getByRole("button", { name: "Send", exact: true }).click();
    await w.page.locator(".msg.assistant .content", { hasText: /\S/ }).waitFor({ timeout: 30_000 });
    // Dispatched, not clicked: a click waits for the button to hold still, and the growing reply
    // moves it until the stream ends (on a fast machine stories260K fills its context in ~1.6 s).
    await w.page.getByRole("button", { name: "Stop", exact: true }).dispatchEvent("click");
    const stats = w.page.locator(".msg.assistant .stats");
    await stats.waitFor();
    expect(await stats.textContent()).toMatch(/^stopped · \d+ tokens/);
    await w.page.getByRole("button", { name: "Send", exact: true }).waitFor();
    // The server let go of the request: the model has nothing running.
    for (let i = 0; i < 50; i++) {
      const activity = (await (await srv.request("/admin/v1/activity")).json()) as { models: { id: string; active_requests: number }[] };
      if (activity.models.find((m) => m.id === "stories260K")?.active_requests === 0) break;
      await Bun.sleep(50);
    }
    const after = (await (await srv.request("/admin/v1/activity")).json()) as { models: { id: string; active_requests: number }[] };
    expect(after.models.find((m) => m.id === "stories260K")?.active_requests).toBe(0);
    await w.page.getByRole("button", { name: "Clear", exact: true }).click();
    expect(w.problems).toEqual([]);
  }, 60_000);

  test("the playground streams a reply with its time to first token and tokens/s, max_tokens unset", async () => {
    await w.page.goto(`${srv.url}/#/playground`);
    await w.page.locator('select[aria-label="model"] option', { hasText: "stories260K" }).waitFor({ state: "attached" });
    await w.page.getByLabel("model", { exact: true }).selectOption("stories260K");
    await w.page.getByLabel("message", { exact: true }).fill("Once upon a time");
    const sent = w.page.waitForRequest((r) => r.url().endsWith("/v1/chat/completions"));
    const answered = w.page.waitForResponse((r) => r.url().endsWith("/v1/chat/completions"));
    await w.page.getByRole("button", { name: "Send", exact: true }).click();
    const body = (await sent).postDataJSON() as Record<string, unknown>;
    expect(body).toMatchObject({ model: "stories260K", stream: true, messages: [{ role: "user", content: "Once upon a time" }] });
    expect(Object.keys(body)).not.toContain("max_tokens");
    expect(Object.keys(body)).not.toContain("temperature");
    const stats = w.page.locator(".msg.assistant .stats");
    await stats.waitFor({ timeout: 30_000 });
    expect(await stats.textContent()).toMatch(/^\d+ tokens · [\d.]+ tokens\/s · first token after [\d.]+ s$/);
    // The rate is the engine's decode rate from the last chunk's timings, not chunks counted as they arrive in bursts.
    const rate = /"predicted_per_second":([\d.e+-]+)/.exec(await (await answered).text())?.[1];
    expect(rate).toBeDefined();
    expect(await stats.textContent()).toContain(` · ${Number(rate).toFixed(1)} tokens/s · `);
    expect((await w.page.locator(".msg.assistant .content").textContent())?.trim().length).toBeGreaterThan(0);
    expect(await horizontalOverflow(w.page)).toBe(0);
    await w.screenshot("playground");
    expect(w.problems).toEqual([]);
  }, 60_000);

  test("the playground shows a thinking model's reasoning folded, with the system prompt and temperature it was given", async () => {
    // The trained agent model's greedy reply to this system prompt and greeting (test/fixtures/agent-model.ts, case "greeting").
    await w.page.getByRole("button", { name: "Clear", exact: true }).click();
    await w.page.locator('select[aria-label="model"] option', { hasText: "agent-qwen3" }).waitFor({ state: "attached" });
    await w.page.getByLabel("model", { exact: true }).selectOption("agent-qwen3");
    await w.page.getByLabel("system prompt").fill("You are a helpful assistant.");
    await w.page.getByLabel("temperature").fill("0");
    await w.page.getByLabel("message", { exact: true }).fill("Hello!");
    const sent = w.page.waitForRequest((r) => r.url().endsWith("/v1/chat/completions"));
    await w.page.getByRole("button", { name: "Send", exact: true }).click();
    expect((await sent).postDataJSON()).toMatchObject({ temperature: 0, messages: [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: "Hello!" }] });
    const reply = w.page.locator(".msg.assistant");
    await reply.locator(".stats").waitFor({ timeout: 30_000 });
    const thinking = reply.locator("details");
    expect(await thinking.getAttribute("open")).toBeNull();
    expect(await thinking.locator("summary").textContent()).toBe("Thinking");
    expect((await thinking.textContent())?.trim()).toBe("ThinkingThe user greets me.");
    expect(await reply.locator(".content").textContent()).toBe("Hello! How can I help you today?");
    expect(await horizontalOverflow(w.page)).toBe(0);
    await w.screenshot("playground-thinking");
    expect(w.problems).toEqual([]);
  }, 60_000);

  test("the system view shows that request in the model's activity, and the memory gauge", async () => {
    await view("system", '#activity tr[data-model="stories260K"]');
    const cells = await w.page.locator('#activity tr[data-model="stories260K"] td').allTextContents();
    expect(Number(cells[4])).toBeGreaterThanOrEqual(1);
    expect(Number(cells[5]?.replace(/,/g, ""))).toBeGreaterThan(0);
    // Both loaded models on the gauge's legend, with the budget and physical memory.
    await w.page.getByText(/stories260K [\d.]+ (KB|MB) · agent-qwen3 [\d.]+ (KB|MB) · budget [\d.]+ GB \(red line\) · physical/).waitFor();
    await w.page.getByText("node-llama-cpp", { exact: false }).first().waitFor();
    // The engines list as GET /admin/v1/engines gives it: this run's engine selected. Checking for
    // updates needs a release URL, which a server running from source has not: the reason is shown.
    const engines = (await (await srv.request("/admin/v1/engines")).json()) as { data: { version: string; selected: boolean }[] };
    const inUse = engines.data.find((e) => e.selected)!.version;
    await w.page.locator(`[data-engine="${inUse}"]`).getByText(`● ${inUse}`).waitFor();
    w.expectErrors(/status of 409/);
    await w.page.getByRole("button", { name: "Check for engine updates" }).click();
    await w.page.getByText(/LMX_UPDATE_BASE_URL/).waitFor();
    w.expectErrors(undefined);
    await w.screenshot("system");
    expect(w.problems).toEqual([]);
  }, 30_000);

  test("a pull from the hub search shows its progress bar, cancels and retries", async () => {
    // The first transfer breaks partway and its resume stalls, so the bar is seen between empty and
    // full (a whole local transfer is quicker than one progress interval).
    const file = { repo: "lmx-test/tiny-quants-GGUF", file: "tiny-Q5_K_M.gguf" };
    hub.cutAfter(file, 200_000);
    hub.stallAfter(file, 100_000);
    await view("models", '[data-model="stories260K"]');
    await w.page.getByLabel("hub search").fill("tiny");
    await w.page.getByRole("button", { name: "Search", exact: true }).click();
    const repo = w.page.locator('[data-repo="lmx-test/tiny-quants-GGUF"]');
    await repo.waitFor();
    const row = repo.locator("tr", { hasText: "tiny-Q5_K_M.gguf" });
    expect(await row.textContent()).toContain("fits");
    expect(await repo.textContent()).not.toContain("mmproj");
    expect(await horizontalOverflow(w.page)).toBe(0);
    await row.getByRole("button", { name: "Pull", exact: true }).click();
    await w.page.getByText("Pulling lmx-test/tiny-quants-GGUF:tiny-Q5_K_M.gguf").waitFor();

    await view("downloads", '[data-download][data-state="running"]');
    const running = w.page.locator('[data-download][data-state="running"]');
    const bar = running.getByRole("progressbar");
    for (let i = 0; i < 100 && Number(await bar.getAttribute("aria-valuenow")) === 0; i++) await Bun.sleep(100);
    const shown = Number(await bar.getAttribute("aria-valuenow"));
    expect(shown).toBeGreaterThan(0);
    expect(shown).toBeLessThan(100);
    expect(await running.textContent()).toMatch(/KB of 1\.\d MB/);
    await w.screenshot("downloads");

    await running.getByRole("button", { name: "Cancel", exact: true }).click();
    const cancelled = w.page.locator('[data-download][data-state="cancelled"]');
    await cancelled.waitFor();
    hub.clearFaults();
    await cancelled.getByRole("button", { name: "Retry", exact: true }).click();
    await w.page.locator('[data-download][data-state="done"] [aria-valuenow="100"]').waitFor({ timeout: 30_000 });
    expect(await horizontalOverflow(w.page)).toBe(0);
    expect(w.problems).toEqual([]);
  }, 60_000);

  test("the API reference at /docs renders offline", async () => {
    const docs = await watchedPage(browser, srv.url);
    try {
      await docs.page.goto(`${srv.url}/docs`);
      await docs.page.getByText("/v1/chat/completions").first().waitFor({ timeout: 30_000 });
      await docs.screenshot("docs");
      expect(docs.problems).toEqual([]);
    } finally {
      await docs.close();
    }
  }, 60_000);

  test("unload and delete from the models view", async () => {
    await view("models", '[data-model="stories260K"] [data-state="ready"]');
    const card = w.page.locator('[data-model="stories260K"]');
    await card.getByRole("button", { name: "Unload", exact: true }).click();
    await card.getByRole("button", { name: "Load", exact: true }).waitFor();
    expect(await card.locator("[data-state]").getAttribute("data-state")).toBe("unloaded");
    // The model the pull downloaded goes, files and all.
    const pulled = w.page.locator('[data-model]:not([data-model="stories260K"]):not([data-model="agent-qwen3"])');
    await pulled.waitFor();
    const id = await pulled.getAttribute("data-model");
    w.page.once("dialog", (d) => void d.accept());
    await pulled.getByRole("button", { name: "Delete", exact: true }).click();
    await pulled.waitFor({ state: "detached" });
    expect((await srv.request(`/admin/v1/models/${id}`)).status).toBe(404);
    expect(w.problems).toEqual([]);
  }, 30_000);

  test("settings warn when the server listens beyond this machine without keys", async () => {
    // This server is on loopback; the page is shown what a 0.0.0.0 server without keys reports.
    await w.page.route("**/admin/v1/system", async (route) => {
      const res = await route.fetch();
      const body = (await res.json()) as { server: Record<string, unknown> };
      await route.fulfill({ response: res, json: { ...body, server: { ...body.server, bound_host: "0.0.0.0", loopback_only: false, auth_required: false } } });
    });
    try {
      await view("settings", "#exposed");
      expect(await w.page.locator("#exposed").textContent()).toContain("No API key is set, so that means everyone");
      await w.screenshot("settings-exposed");
    } finally {
      await w.page.unroute("**/admin/v1/system");
    }
    expect(w.problems).toEqual([]);
  }, 30_000);

  test("settings: the first key turns keys on and the tab keeps its admin key in sessionStorage only; revoking it makes the page ask for a key", async () => {
    await view("settings", "text=Bound to");
    expect(await w.page.locator("#exposed").count()).toBe(0);
    await w.page.getByLabel("key name").fill("dashboard-test");
    await w.page.getByLabel("scope").selectOption("inference");
    await w.page.getByRole("button", { name: "Create key", exact: true }).click();
    const created = w.page.locator("#created-key");
    await created.waitFor();
    // The first key comes with an admin key, which this tab now sends.
    const key = await w.page.evaluate<string | null>("sessionStorage.getItem('lmx.key')");
    expect(key).toMatch(/^lmx-/);
    expect(await created.textContent()).toContain(key ?? "missing");
    expect(await w.page.evaluate<number>("localStorage.length")).toBe(0);
    expect(await w.page.context().cookies()).toEqual([]);
    const adminRow = w.page.locator("[data-key]", { hasText: "admin" });
    await w.page.locator("[data-key]", { hasText: "dashboard-test" }).waitFor();
    await adminRow.waitFor();
    // Keys are on now: the API refuses a call without one, and takes the tab's.
    expect((await fetch(`${srv.url}/admin/v1/keys`)).status).toBe(401);
    expect((await srv.request("/admin/v1/keys", { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    expect(await horizontalOverflow(w.page)).toBe(0);
    await w.screenshot("settings");

    // A second admin key, since the server refuses to revoke the last one while inference keys remain.
    await w.page.getByLabel("key name").fill("backup");
    await w.page.getByLabel("scope").selectOption("admin");
    await w.page.getByRole("button", { name: "Create key", exact: true }).click();
    await w.page.locator("[data-key]", { hasText: "backup" }).waitFor();
    const backup = (await created.locator("code").first().textContent()) ?? "";
    expect(backup).toMatch(/^lmx-/);

    // Revoking the tab's own key makes its next call a 401, which the browser logs as an error.
    w.expectErrors(/status of 401/);
    w.page.once("dialog", (d) => void d.accept());
    await w.page.locator("[data-key]", { hasText: "created with the first key" }).getByRole("button", { name: "Revoke", exact: true }).click();
    const prompt = w.page.getByRole("dialog");
    await prompt.getByText("API key needed").waitFor();
    expect(await prompt.textContent()).toContain("The key this tab used was refused");
    expect(await horizontalOverflow(w.page)).toBe(0);
    await w.screenshot("key-prompt");
    w.expectErrors(undefined);

    // The backup key entered at the prompt serves this tab again.
    await prompt.getByLabel("API key").fill(backup);
    await prompt.getByRole("button", { name: "Use key", exact: true }).click();
    await prompt.waitFor({ state: "detached" });
    await w.page.locator("[data-key]", { hasText: "backup" }).waitFor();
    expect(await w.page.evaluate<string | null>("sessionStorage.getItem('lmx.key')")).toBe(backup);
    expect(w.problems).toEqual([]);
  }, 30_000);
});

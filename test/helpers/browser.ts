// Headless Chromium for end-to-end tests of LMX's web pages, driven by playwright-core with the
// system's Chromium (Debian's `chromium` package; a test tool's own browser download is not used).
// Every page is watched: a console error, an uncaught exception or a request to any host but the
// LMX under test is recorded as a problem the test asserts is absent.
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Browser, type ConsoleMessage, type Page, chromium } from "playwright-core";

export const CHROMIUM = process.env.LMX_CHROMIUM ?? "/usr/bin/chromium";
export const SCREENSHOTS = resolve(import.meta.dir, "../../test-artifacts/screenshots");

/**
 * Undefined when Chromium is there; else why the browser tests are skipped. Under CI a missing
 * browser is an error: the tests must not pass there by not running.
 */
export function chromiumMissing(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  const message = `Chromium not found at ${CHROMIUM} (install Debian's chromium package, or set LMX_CHROMIUM)`;
  if (process.env.CI) throw new Error(message);
  return message;
}

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true });
}

export interface WatchedPage {
  page: Page;
  /** Console errors, page errors and requests that left the server under test. */
  problems: string[];
  /** Console errors matching this are expected (e.g. a 401 the test provokes), not problems. */
  expectErrors(pattern: RegExp | undefined): void;
  screenshot(name: string): Promise<void>;
  close(): Promise<void>;
}

/** A page of its own browser context, `width` px wide (390: a phone), allowed to reach `origin` only. */
export async function watchedPage(browser: Browser, origin: string, width = 1280): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport: { width, height: 844 } });
  const page = await context.newPage();
  const problems: string[] = [];
  const allowed = new URL(origin).host;
  let expected: RegExp | undefined;
  page.on("console", (msg: ConsoleMessage) => {
    if (msg.type() !== "error") return;
    const text = `${msg.text()} (${msg.location().url})`;
    if (!expected?.test(text)) problems.push(`console error: ${text}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  // Every request passes here: one to another host is refused and recorded.
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if ((url.protocol === "http:" || url.protocol === "https:") && url.host !== allowed) {
      problems.push(`request to another host: ${url.href}`);
      return route.abort("blockedbyclient");
    }
    return route.continue();
  });
  return {
    page,
    problems,
    expectErrors: (pattern) => {
      expected = pattern;
    },
    async screenshot(name) {
      mkdirSync(SCREENSHOTS, { recursive: true });
      await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
    },
    close: () => context.close(),
  };
}

/** How far the page is wider than the window (0: no horizontal scroll). */
export function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate<number>("document.documentElement.scrollWidth - document.documentElement.clientWidth");
}

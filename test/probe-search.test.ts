import { describe, expect, test } from "bun:test";
import { searchContextLength, type StepOutcome } from "../src/probe/search.ts";

const works = (ok: boolean, loads = true): StepOutcome => ({ loads, works: ok, decidedBy: loads ? "copy" : "load", detail: ok ? "ok" : "no" });
const threshold = (t: number) => async (n: number) => works(n <= t);

describe("context search on scripted outcomes", () => {
  test("monotone: converges within 5% below the true limit", async () => {
    for (const truth of [300, 777, 3000, 6000]) {
      const r = await searchContextLength({ min: 128, max: 8192, check: threshold(truth) });
      expect(r.testedContextLength).toBeLessThanOrEqual(truth);
      expect(r.testedContextLength).toBeGreaterThanOrEqual(truth * 0.95 - 1);
      expect(r.steps[0]!.contextLength).toBe(128);
      expect(r.steps[1]!.contextLength).toBe(8192);
      expect(r.steps.length).toBeLessThan(14);
      expect(r.reason).toMatch(/^works at \d+, fails at \d+/);
    }
  });

  test("all pass: the maximum", async () => {
    const r = await searchContextLength({ min: 128, max: 8192, check: threshold(1e9) });
    expect(r.testedContextLength).toBe(8192);
    expect(r.steps.map((s) => s.contextLength)).toEqual([128, 8192]);
  });

  test("all fail: 0 with the reason, never the declared value", async () => {
    const r = await searchContextLength({ min: 128, max: 8192, check: threshold(0) });
    expect(r.testedContextLength).toBe(0);
    expect(r.reason).toContain("does not work even at 128");
    expect(r.steps.length).toBe(1);
  });

  test("load failures are reported as such", async () => {
    const r = await searchContextLength({ min: 128, max: 8192, check: async (n) => (n <= 1000 ? works(true) : works(false, false)) });
    expect(r.testedContextLength).toBeGreaterThan(950);
    expect(r.reason).toMatch(/does not load at \d+/);
    const none = await searchContextLength({ min: 128, max: 8192, check: async () => works(false, false) });
    expect(none.reason).toContain("does not load at 128");
  });

  test("noisy: a false pass above the limit is caught by the re-check", async () => {
    const truth = 2000;
    // One check just above the limit passes by chance; every other check is right.
    let fooled = false;
    const r = await searchContextLength({
      min: 128, max: 8192, granularity: 8,
      check: async (n) => {
        if (!fooled && n > truth && n < truth * 1.5) {
          fooled = true;
          return works(true);
        }
        return works(n <= truth);
      },
    });
    expect(fooled).toBe(true);
    expect(r.testedContextLength).toBeLessThanOrEqual(truth);
    expect(r.testedContextLength).toBeGreaterThan(truth * 0.9);
  });

  test("time-out: stops starting new steps and returns the best pass so far", async () => {
    let t = 0;
    const r = await searchContextLength({
      min: 128, max: 8192, deadline: 3500, now: () => t,
      check: async (n) => { t += 1000; return works(n <= 5000); },
    });
    expect(r.timedOut).toBe(true);
    expect(r.steps.length).toBe(4);
    expect(r.testedContextLength).toBeGreaterThanOrEqual(128);
    expect(r.reason).toContain("time budget exhausted");
  });

  test("granularity rounds every tested length", async () => {
    const r = await searchContextLength({ min: 100, max: 8000, granularity: 64, check: threshold(4321) });
    for (const s of r.steps) expect(s.contextLength % 64).toBe(0);
  });
});

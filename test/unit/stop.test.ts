// core/stop.ts: stop strings matched across deltas, table-driven over every way to split the text.
import { describe, expect, test } from "bun:test";
import { StopFilter } from "../../src/core/stop.ts";

/** Feeds `pieces`, then flushes if no stop matched; returns what left and whether it stopped. */
function run(stops: string[], pieces: string[]): { out: string; stopped: boolean; matched?: string; chunks: string[] } {
  const f = new StopFilter(stops);
  const chunks: string[] = [];
  let stopped = false;
  let matched: string | undefined;
  for (const p of pieces) {
    const r = f.feed(p);
    chunks.push(r.text);
    if (r.stopped) { stopped = true; matched = r.matched; break; }
  }
  if (!stopped) chunks.push(f.flush());
  return { out: chunks.join(""), stopped, matched, chunks };
}

/** Every split of `text` into two or three pieces, plus one piece per code unit. */
function splits(text: string): string[][] {
  const out: string[][] = [[text], [...text].flatMap((c) => c.split(""))];
  for (let i = 0; i <= text.length; i++) {
    out.push([text.slice(0, i), text.slice(i)]);
    for (let j = i; j <= text.length; j++) out.push([text.slice(0, i), text.slice(i, j), text.slice(j)]);
  }
  return out;
}

/** `matched`: the stop string reported as the one that ended the reply. */
const cases: { name: string; stops: string[]; text: string; reply: string; stopped: boolean; matched?: string }[] = [
  { name: "a multi-char stop in the middle", stops: ["STOP"], text: "abcSTOPxyz", reply: "abc", stopped: true, matched: "STOP" },
  { name: "no match: everything is flushed", stops: ["STOP"], text: "abSTcSTOxSTO", reply: "abSTcSTOxSTO", stopped: false },
  { name: "a stop at the very start", stops: ["##"], text: "##after", reply: "", stopped: true, matched: "##" },
  { name: "a stop at the very end", stops: ["end"], text: "the end", reply: "the ", stopped: true, matched: "end" },
  { name: "overlapping stops: the first to complete wins", stops: ["abcd", "bc"], text: "xabcd", reply: "xa", stopped: true, matched: "bc" },
  { name: "a stop inside another completing at once: the longer cuts earlier", stops: ["cd", "abcd"], text: "xabcdy", reply: "x", stopped: true, matched: "abcd" },
  { name: "a self-overlapping stop after a near miss", stops: ["aab"], text: "xaaab!", reply: "xa", stopped: true, matched: "aab" },
  { name: "a partial stop that turns into another", stops: ["abx", "bcy"], text: "abcy", reply: "a", stopped: true, matched: "bcy" },
  { name: "repeated prefix then no match", stops: ["ababc"], text: "abababab", reply: "abababab", stopped: false },
  { name: "unicode stop and text", stops: ["ñé"], text: "añ日本ñé🙂", reply: "añ日本", stopped: true, matched: "ñé" },
  { name: "an astral-plane stop", stops: ["🙂!"], text: "hi 🙂🙂! no", reply: "hi 🙂", stopped: true, matched: "🙂!" },
  { name: "empty stop strings are ignored", stops: ["", "Z"], text: "abZc", reply: "ab", stopped: true, matched: "Z" },
];

describe("StopFilter", () => {
  for (const c of cases) {
    test(`${c.name}, split at every position`, () => {
      for (const pieces of splits(c.text)) {
        const r = run(c.stops, pieces);
        expect({ pieces, out: r.out, stopped: r.stopped, matched: r.matched }).toEqual({ pieces, out: c.reply, stopped: c.stopped, matched: c.matched });
      }
    });
  }

  test("text leaves as soon as it cannot start a stop string, and held text never contains it", () => {
    const f = new StopFilter(["STOP"]);
    expect(f.feed("abS")).toEqual({ text: "ab", stopped: false });
    expect(f.feed("T")).toEqual({ text: "", stopped: false });
    expect(f.feed("x")).toEqual({ text: "STx", stopped: false });
    expect(f.feed("STO")).toEqual({ text: "", stopped: false });
    expect(f.feed("P and more")).toEqual({ text: "", stopped: true, matched: "STOP" });
    expect(f.feed("later")).toEqual({ text: "", stopped: true });
  });

  test("the held text stays bounded by the longest stop string over a long reply", () => {
    const f = new StopFilter(["<|end|>", "xyz"]);
    let out = "";
    for (let i = 0; i < 20_000; i++) out += f.feed(i % 2 ? "<|en" : "d, ").text;
    expect(out.length).toBeGreaterThan(20_000 * 3.5 - 10);
    expect(out + f.flush()).toBe("d, <|en".repeat(10_000));
  });

  test("a filter without a stop string is a programming error", () => {
    expect(() => new StopFilter([""])).toThrow(RangeError);
  });
});

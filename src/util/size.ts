import { totalmem } from "node:os";

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

/** "24GB", "512MB", "1.5GiB" (binary units: memory is sold in GiB) or "75%" of total RAM → bytes. */
export function parseMemorySize(text: string, total = totalmem()): number {
  const t = text.trim().toLowerCase();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(t);
  if (pct) {
    const p = Number(pct[1]);
    if (p <= 0 || p > 100) throw new Error(`memory budget ${text}: a percentage must be in (0, 100]`);
    return Math.floor((total * p) / 100);
  }
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(t);
  if (!m || UNITS[m[2]!] === undefined) throw new Error(`memory size '${text}' is not like 24GB, 512MB or 75%`);
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2]!]!);
  if (bytes <= 0) throw new Error(`memory size '${text}' must be positive`);
  return bytes;
}

/** `n` formatted so it never reads the same as `other` ("needs 2.5 MiB, budget 2.5 MiB" helps nobody). */
export function formatBytesApart(n: number, other: number): string {
  const text = formatBytes(n);
  return n !== other && text === formatBytes(other) ? `${text} (${n} B)` : text;
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

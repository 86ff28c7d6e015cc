import { lstatSync, type Stats, statSync } from "node:fs";

function kind(st: Stats): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "a device";
  if (st.isDirectory()) return "a directory";
  return "not a regular file";
}

/**
 * Why `path` must not be opened as a model file, or undefined for a regular file (or a symlink to
 * one). Opening a FIFO blocks until a writer appears, i.e. for ever, and reading a device never
 * ends, so model scans check with stat before any open.
 */
export function notRegularFile(path: string): string | undefined {
  let link: Stats;
  try {
    link = lstatSync(path);
  } catch {
    return "no such file";
  }
  if (link.isFile()) return undefined;
  if (!link.isSymbolicLink()) return `it is ${kind(link)}`;
  let target: Stats;
  try {
    target = statSync(path);
  } catch {
    return "it is a dangling symlink";
  }
  return target.isFile() ? undefined : `it is a symlink to ${kind(target)}`;
}

// Proof that LMX and the reference llama-server run the same kernels: both processes must have
// mapped the same files (libggml-base, libllama and the libggml-cpu-* variant ggml's loader chose,
// from /proc/PID/maps), compared by content: from source LMX maps the very files of node_modules,
// while the compiled `lmx` maps its own extracted copy of the engine bundle; and ggml must describe
// the same CPU features in both (llama-server's `system_info` log line against node-llama-cpp's
// `llama.systemInfo`, from the same libraries loaded with LMX's options).

import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import { REPO_ROOT } from "./llama-build.ts";

export interface MappedEngine {
  /** e.g. "sapphirerapids" from libggml-cpu-sapphirerapids.so. */
  cpuVariant?: string;
  /** basename → "path (inode N)" of every mapped libggml or libllama file. */
  files: Record<string, string>;
  /** basename → SHA-256 of the file's content, where it could be read. */
  digests?: Record<string, string>;
}

/** The ggml and llama libraries a process has mapped (Linux /proc). */
export function mappedEngine(pid: number): MappedEngine {
  const files: Record<string, string> = {};
  const digests: Record<string, string> = {};
  let maps = "";
  try {
    maps = readFileSync(`/proc/${pid}/maps`, "utf8");
  } catch {
    return { files };
  }
  for (const line of maps.split("\n")) {
    const path = line.slice(line.indexOf("/")).trim();
    if (!line.includes("/") || !/\/lib(ggml|llama)[^/]*\.so/.test(path)) continue;
    const name = basename(path);
    if (files[name] !== undefined) continue;
    let inode = "?";
    try {
      inode = String(statSync(path).ino);
      digests[name] = createHash("sha256").update(readFileSync(path)).digest("hex");
    } catch {
      // A file deleted after mapping keeps its path in maps; the inode is then unknown.
    }
    files[name] = `${path} (inode ${inode})`;
  }
  const variant = Object.keys(files).map((f) => /^libggml-cpu-([\w-]+)\.so$/.exec(f)?.[1]).find((v) => v !== undefined);
  return { cpuVariant: variant, files, digests };
}

/** The CPU feature part of llama-server's `system_info:` line ("CPU : SSE3 = 1 | ..."), from its log. */
export function serverSystemInfo(logText: string): string | undefined {
  const line = logText.split("\n").find((l) => l.includes("system_info:"));
  if (line === undefined) return undefined;
  // "system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : ..." → what ggml itself prints.
  const m = /system_info:.*?\/\s*\d+\s*\|\s*(.*)$/.exec(line);
  return normalizeSystemInfo(m?.[1] ?? line.replace(/^.*system_info:\s*/, ""));
}

export function normalizeSystemInfo(s: string): string {
  return s.split("|").map((p) => p.trim()).filter(Boolean).join(" | ");
}

/** node-llama-cpp's `llama.systemInfo` and mapped CPU variant, from a child process using LMX's getLlama options. */
export function nodeLlamaCppSystemInfo(): { systemInfo: string; cpuVariant?: string } {
  const script = `
    import { getLlama, LlamaLogLevel } from "node-llama-cpp";
    import { readFileSync } from "node:fs";
    const llama = await getLlama({ gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error });
    const variant = /libggml-cpu-([\\w-]+)\\.so/.exec(readFileSync("/proc/self/maps", "utf8"))?.[1];
    console.log(JSON.stringify({ systemInfo: llama.systemInfo, cpuVariant: variant }));
    await llama.dispose();
  `;
  const res = Bun.spawnSync([process.execPath, "-e", script], { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" });
  const out = res.stdout.toString().trim().split("\n").pop() ?? "";
  if (res.exitCode !== 0 || !out.startsWith("{")) throw new Error(`node-llama-cpp system info failed:\n${res.stderr.toString().slice(-2000)}`);
  const parsed = JSON.parse(out) as { systemInfo: string; cpuVariant?: string };
  return { systemInfo: normalizeSystemInfo(parsed.systemInfo), cpuVariant: parsed.cpuVariant };
}

export interface KernelCheck {
  identical: boolean;
  cpu_variant: { lmx?: string; llama_server?: string };
  /** Library files mapped by both processes (the same file, or files of the same content). */
  shared_files: string[];
  /** Library files whose content differs or is unknown, or that only one process mapped. */
  differing_files: string[];
  system_info: { llama_server?: string; node_llama_cpp?: string; equal: boolean };
}

export function compareKernels(lmx: MappedEngine, server: MappedEngine, serverInfo: string | undefined, nlcInfo: string | undefined): KernelCheck {
  const names = new Set([...Object.keys(lmx.files), ...Object.keys(server.files)]);
  const shared: string[] = [];
  const differing: string[] = [];
  for (const n of [...names].sort()) {
    const digest = lmx.digests?.[n];
    if (lmx.files[n] !== undefined && lmx.files[n] === server.files[n]) shared.push(lmx.files[n]!);
    else if (digest !== undefined && digest === server.digests?.[n]) shared.push(`${n}: same content (sha256 ${digest.slice(0, 12)}): LMX ${lmx.files[n]}; llama-server ${server.files[n]}`);
    else differing.push(`${n}: LMX ${lmx.files[n] ?? "not mapped"}; llama-server ${server.files[n] ?? "not mapped"}`);
  }
  const equal = serverInfo !== undefined && serverInfo === nlcInfo;
  return {
    identical: lmx.cpuVariant !== undefined && lmx.cpuVariant === server.cpuVariant && differing.length === 0 && equal,
    cpu_variant: { lmx: lmx.cpuVariant, llama_server: server.cpuVariant },
    shared_files: shared,
    differing_files: differing,
    system_info: { llama_server: serverInfo, node_llama_cpp: nlcInfo, equal },
  };
}

// Compiler flags an engine build needs because of a known compiler bug, found by looking at the
// compiler that will run rather than by its version number (distributions backport fixes).
//
// GCC's AMX header, before it switched to __builtin_ia32_ldtilecfg (GCC commit 2b3ecdf4, backported
// to later 11–14 point releases; Debian 12's GCC 12.2 lacks it), wrote `_tile_loadconfig` as an asm
// statement that reads 8 bytes of the 64-byte tile configuration. The optimizer then drops the
// stores that fill in the tiles' rows and widths, ggml's AMX kernel loads a configuration with no
// tile in it, and the first tile instruction faults (SIGILL on q8_0 models on CPUs with AMX; see
// docs/performance.md). `-fno-dse` keeps those stores.

import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";

/** Whether an amxtileintrin.h declares ldtilecfg's memory operand as one pointer, not the whole configuration. */
export function amxHeaderDropsTileConfig(header: string): boolean {
  return /"ldtilecfg\\t%X0"\s*::\s*"m"\s*\(\s*\*\s*\(\s*\(\s*const\s+void\s*\*\*\s*\)/.test(header);
}

export interface CompilerProbe {
  /** The C++ compiler CMake will pick (CXX, else c++). */
  cxx: string;
  /** Runs the compiler with the arguments; its stdout, or undefined when it cannot run. */
  run: (cxx: string, args: string[]) => string | undefined;
  readFile: (path: string) => string | undefined;
}

export function hostCompilerProbe(env: NodeJS.ProcessEnv = process.env): CompilerProbe {
  return {
    cxx: env.CXX?.trim() || "c++",
    run: (cxx, args) => {
      try {
        const res = Bun.spawnSync([cxx, ...args], { stdout: "pipe", stderr: "ignore" });
        return res.exitCode === 0 ? res.stdout.toString() : undefined;
      } catch {
        return undefined;
      }
    },
    readFile: (path) => (existsSync(path) ? readFileSync(path, "utf8") : undefined),
  };
}

/**
 * Flags to add to the C and C++ compile flags of a build for `target`, each with the reason to log.
 * Only GCC answers `-print-file-name=include` with a folder holding amxtileintrin.h.
 */
export function compilerWorkarounds(target: string, probe: CompilerProbe): Array<{ flag: string; reason: string }> {
  if (!target.endsWith("-x64")) return [];
  const dir = probe.run(probe.cxx, ["-print-file-name=include"])?.trim();
  if (dir === undefined || !isAbsolute(dir)) return [];
  const header = probe.readFile(join(dir, "amxtileintrin.h"));
  if (header === undefined || !amxHeaderDropsTileConfig(header)) return [];
  return [{ flag: "-fno-dse", reason: `${probe.cxx}'s ${join(dir, "amxtileintrin.h")} lets the optimizer drop AMX tile configuration stores` }];
}

/** CMake's own Release flags for GCC and Clang, which the workaround flags are added to. */
const RELEASE_FLAGS = "-O3 -DNDEBUG";

/**
 * `env` with the flags added to the Release build's C and C++ flags, through node-llama-cpp's
 * NODE_LLAMA_CPP_CMAKE_OPTION_* variables. CFLAGS and CXXFLAGS would not reach the compiler:
 * cmake-js always sets CMAKE_CXX_FLAGS on its command line, and CMake reads CXXFLAGS only when it
 * is not set. The *_RELEASE variables are left to CMake's defaults otherwise, so they carry the
 * flags without touching cmake-js's.
 */
export function withFlags(env: NodeJS.ProcessEnv, flags: string[]): NodeJS.ProcessEnv {
  if (flags.length === 0) return env;
  const value = [RELEASE_FLAGS, ...flags].join(" ");
  return { ...env, NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_C_FLAGS_RELEASE: value, NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_CXX_FLAGS_RELEASE: value };
}

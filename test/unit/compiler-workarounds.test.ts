// src/update/engine-build/compiler-workarounds.ts: an engine build adds -fno-dse exactly when the
// compiler's AMX header lets the optimizer drop the tile configuration's stores.
import { describe, expect, test } from "bun:test";
import { amxHeaderDropsTileConfig, type CompilerProbe, compilerWorkarounds, withFlags } from "../../src/update/engine-build/compiler-workarounds.ts";

// The body of _tile_loadconfig in the two forms GCC has shipped (GCC 12.2's, and after 2b3ecdf4).
const ASM_HEADER = `_tile_loadconfig (const void *__config)\n{\n  __asm__ volatile ("ldtilecfg\\t%X0" :: "m" (*((const void **)__config)));\n}\n`;
const BUILTIN_HEADER = `_tile_loadconfig (const void *__config)\n{\n  __builtin_ia32_ldtilecfg (__config);\n}\n`;

function probe(files: Record<string, string>, includeDir: string | undefined = "/usr/lib/gcc/x86_64-linux-gnu/12/include"): CompilerProbe {
  return {
    cxx: "c++",
    run: (_cxx, args) => (args[0] === "-print-file-name=include" ? includeDir : undefined),
    readFile: (path) => files[path],
  };
}

describe("compiler workarounds", () => {
  test("the asm form of ldtilecfg is recognised, the builtin form is not", () => {
    expect(amxHeaderDropsTileConfig(ASM_HEADER)).toBe(true);
    expect(amxHeaderDropsTileConfig(BUILTIN_HEADER)).toBe(false);
  });

  test("-fno-dse for x64 builds with GCC's asm header, nothing otherwise", () => {
    const gcc12 = probe({ "/usr/lib/gcc/x86_64-linux-gnu/12/include/amxtileintrin.h": ASM_HEADER });
    expect(compilerWorkarounds("linux-x64", gcc12).map((w) => w.flag)).toEqual(["-fno-dse"]);
    // No AMX on Arm; a fixed GCC; clang (no such header where it points); a compiler that does not run.
    expect(compilerWorkarounds("linux-arm64", gcc12)).toEqual([]);
    expect(compilerWorkarounds("linux-x64", probe({ "/usr/lib/gcc/x86_64-linux-gnu/12/include/amxtileintrin.h": BUILTIN_HEADER }))).toEqual([]);
    expect(compilerWorkarounds("linux-x64", probe({}, "/usr/lib/llvm-14/lib/clang/14.0.6/include"))).toEqual([]);
    expect(compilerWorkarounds("linux-x64", probe({}, "include"))).toEqual([]);
    expect(compilerWorkarounds("linux-x64", probe({}, undefined))).toEqual([]);
  });

  test("flags reach CMake as the Release flags, through node-llama-cpp's option variables", () => {
    expect(withFlags({ PATH: "/bin" }, ["-fno-dse"])).toEqual({
      PATH: "/bin",
      NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_C_FLAGS_RELEASE: "-O3 -DNDEBUG -fno-dse",
      NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_CXX_FLAGS_RELEASE: "-O3 -DNDEBUG -fno-dse",
    });
    const env = { PATH: "/bin" };
    expect(withFlags(env, [])).toBe(env);
  });
});

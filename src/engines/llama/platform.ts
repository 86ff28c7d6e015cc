// Which node-llama-cpp prebuilt binary package the engine bundle carries for a host. We ship one
// CPU build per OS/arch (Metal on Apple Silicon); CUDA and Vulkan variants are deliberately left out
// to keep the executable small.

export interface LlamaPlatform {
  /** `<os>-<arch>` as Node names them, e.g. "darwin-arm64"; used in bundle and folder names. */
  target: string;
  /** npm package holding the prebuilt llama.cpp binaries for that target. */
  packageName: string;
}

const PREBUILT_PACKAGES: Readonly<Record<string, string>> = {
  "linux-x64": "@node-llama-cpp/linux-x64",
  "linux-arm64": "@node-llama-cpp/linux-arm64",
  "darwin-arm64": "@node-llama-cpp/mac-arm64-metal",
  "darwin-x64": "@node-llama-cpp/mac-x64",
};

export const SUPPORTED_LLAMA_TARGETS: readonly string[] = Object.keys(PREBUILT_PACKAGES);

/** The host's target, e.g. "linux-x64". */
export function hostTarget(): string {
  return `${process.platform}-${process.arch}`;
}

/** Resolves the prebuilt package for `target` (default: this host); throws for unsupported targets. */
export function llamaPlatform(target: string = hostTarget()): LlamaPlatform {
  const packageName = PREBUILT_PACKAGES[target];
  if (packageName === undefined) {
    throw new Error(
      `llama.cpp engine: unsupported platform "${target}" (supported: ${SUPPORTED_LLAMA_TARGETS.join(", ")})`,
    );
  }
  return { target, packageName };
}

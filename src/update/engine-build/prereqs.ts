// What a llama.cpp source build needs on this machine, checked before anything is fetched, so a
// missing tool is named with the command that installs it instead of surfacing as a CMake error
// twenty minutes in. node-llama-cpp's build runs cmake-js through npm, hence Node.js.

export interface MissingTool {
  tool: string;
  /** A command that installs it on this system. */
  install: string;
}

export interface PrerequisiteProbe {
  platform: NodeJS.Platform;
  /** Path of an executable on PATH, or null. */
  which: (name: string) => string | null;
  /** Whether `xcode-select -p` succeeds (the Command Line Tools are installed); macOS only. */
  xcodeTools?: () => boolean;
  /** Which Linux package manager to name in install commands. */
  linuxInstaller?: "apt" | "dnf" | "apk" | "pacman" | "zypper" | null;
}

const LINUX_PACKAGES: Record<string, Record<NonNullable<PrerequisiteProbe["linuxInstaller"]>, string>> = {
  git: { apt: "git", dnf: "git", apk: "git", pacman: "git", zypper: "git" },
  cmake: { apt: "cmake", dnf: "cmake", apk: "cmake", pacman: "cmake", zypper: "cmake" },
  "C++ compiler": { apt: "g++", dnf: "gcc-c++", apk: "g++", pacman: "gcc", zypper: "gcc-c++" },
  "make or ninja": { apt: "make", dnf: "make", apk: "make", pacman: "make", zypper: "make" },
  "Node.js (node, npm)": { apt: "nodejs npm", dnf: "nodejs npm", apk: "nodejs npm", pacman: "nodejs npm", zypper: "nodejs npm" },
};

const INSTALL_PREFIX: Record<NonNullable<PrerequisiteProbe["linuxInstaller"]>, string> = {
  apt: "sudo apt-get install -y",
  dnf: "sudo dnf install -y",
  apk: "sudo apk add",
  pacman: "sudo pacman -S --needed",
  zypper: "sudo zypper install -y",
};

const MAC_INSTALL: Record<string, string> = {
  "Xcode Command Line Tools (clang, git, make)": "xcode-select --install",
  cmake: "brew install cmake",
  "Node.js (node, npm)": "brew install node",
};

/** The tools the build needs that this machine lacks, each with its install command. */
export function missingPrerequisites(probe: PrerequisiteProbe): MissingTool[] {
  const has = (...names: string[]): boolean => names.some((name) => probe.which(name) !== null);
  if (probe.platform === "darwin") {
    const missing: string[] = [];
    if (!(probe.xcodeTools?.() ?? true) || !has("clang++", "c++") || !has("git")) missing.push("Xcode Command Line Tools (clang, git, make)");
    if (!has("cmake")) missing.push("cmake");
    if (!has("node") || !has("npm")) missing.push("Node.js (node, npm)");
    return missing.map((tool) => ({ tool, install: MAC_INSTALL[tool]! }));
  }
  const missing: string[] = [];
  if (!has("git")) missing.push("git");
  if (!has("cmake")) missing.push("cmake");
  if (!has("c++", "g++", "clang++")) missing.push("C++ compiler");
  if (!has("make", "ninja")) missing.push("make or ninja");
  if (!has("node") || !has("npm")) missing.push("Node.js (node, npm)");
  const installer = probe.linuxInstaller ?? null;
  return missing.map((tool) => ({
    tool,
    install: installer === null ? `install ${tool} with your system's package manager` : `${INSTALL_PREFIX[installer]} ${LINUX_PACKAGES[tool]![installer]}`,
  }));
}

export function prerequisitesMessage(missing: MissingTool[]): string {
  const lines = missing.map((m) => `  ${m.tool}: ${m.install}`);
  return `building llama.cpp needs tools this machine lacks:\n${lines.join("\n")}`;
}

/** The probe for this machine. */
export function hostProbe(): PrerequisiteProbe {
  const which = (name: string): string | null => Bun.which(name);
  return {
    platform: process.platform,
    which,
    xcodeTools: () => Bun.spawnSync(["xcode-select", "-p"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0,
    linuxInstaller: (["apt", "dnf", "apk", "pacman", "zypper"] as const).find((name) => which(name === "apt" ? "apt-get" : name) !== null) ?? null,
  };
}

import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";

// llama.cpp decodes fastest with one thread per physical performance core: hyper-threads and
// efficiency cores only add synchronisation cost, and oversubscribing a CPU quota is far worse
// (measured here: node-llama-cpp's default thread count ran ~500x slower than 1 thread on 2 cores).

export interface CpuInfo {
  model: string;
  logicalCores: number;
  physicalCores: number;
  /** Performance cores (Apple Silicon P-cores; all physical cores elsewhere). */
  performanceCores: number;
  /** CPUs this process may use: affinity mask and cgroup quota applied. */
  availableCores: number;
  /** The thread count LMX uses when none is configured. */
  defaultThreads: number;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
}

/** CPU limit from the cgroup (v2 cpu.max or v1 cfs quota), as a possibly fractional core count. */
export function cgroupCpuLimit(root = "/sys/fs/cgroup"): number | undefined {
  const v2 = readText(`${root}/cpu.max`);
  if (v2) {
    const [quota, period] = v2.split(/\s+/);
    if (quota && quota !== "max" && period) return Number(quota) / Number(period);
    return undefined;
  }
  const quota = Number(readText(`${root}/cpu/cpu.cfs_quota_us`) ?? readText(`${root}/cpu,cpuacct/cpu.cfs_quota_us`));
  const period = Number(readText(`${root}/cpu/cpu.cfs_period_us`) ?? readText(`${root}/cpu,cpuacct/cpu.cfs_period_us`));
  if (quota > 0 && period > 0) return quota / period;
  return undefined;
}

function linuxPhysicalCores(): number | undefined {
  const base = "/sys/devices/system/cpu";
  let entries: string[];
  try {
    entries = readdirSync(base).filter((e) => /^cpu\d+$/.test(e));
  } catch {
    return undefined;
  }
  const cores = new Set<string>();
  for (const cpu of entries) {
    const core = readText(`${base}/${cpu}/topology/core_id`);
    const pkg = readText(`${base}/${cpu}/topology/physical_package_id`);
    if (core === undefined) return undefined;
    cores.add(`${pkg ?? 0}:${core}`);
  }
  return cores.size || undefined;
}

function sysctlInt(name: string): number | undefined {
  try {
    const res = Bun.spawnSync(["sysctl", "-n", name], { stdout: "pipe", stderr: "ignore" });
    if (res.exitCode !== 0) return undefined;
    const n = Number(res.stdout.toString().trim());
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

let cached: CpuInfo | undefined;

export function cpuInfo(): CpuInfo {
  if (cached) return cached;
  const list = cpus();
  const logical = list.length || 1;
  let physical = logical;
  let performance = logical;
  if (process.platform === "linux") {
    physical = linuxPhysicalCores() ?? logical;
    performance = physical;
  } else if (process.platform === "darwin") {
    physical = sysctlInt("hw.physicalcpu") ?? logical;
    // perflevel0 is the performance cluster on Apple Silicon; Intel Macs have no perflevels.
    performance = sysctlInt("hw.perflevel0.physicalcpu") ?? physical;
  }
  let available = Math.min(availableParallelism(), logical);
  const quota = process.platform === "linux" ? cgroupCpuLimit() : undefined;
  if (quota !== undefined) available = Math.min(available, Math.max(1, Math.ceil(quota)));
  // The affinity mask counts logical CPUs; scale to physical cores by the SMT ratio.
  const smt = Math.max(1, Math.round(logical / physical));
  const availablePhysical = Math.max(1, Math.floor(available / smt));
  cached = {
    model: list[0]?.model ?? "unknown",
    logicalCores: logical,
    physicalCores: physical,
    performanceCores: performance,
    availableCores: available,
    defaultThreads: Math.max(1, Math.min(performance, availablePhysical)),
  };
  return cached;
}

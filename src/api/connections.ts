import { readdirSync } from "node:fs";
import { OverloadedError } from "../errors.ts";
import { log } from "../log.ts";

const FD_DIR = process.platform === "linux" ? "/proc/self/fd" : "/dev/fd";

function openFiles(): number | undefined {
  try {
    return readdirSync(FD_DIR).length;
  } catch {
    return undefined;
  }
}

/**
 * The HTTP runtime neither caps nor reports its connections, and each holds a file descriptor, so
 * the descriptors opened since the server started listening are the count (polled, as a listing
 * of 20k entries takes milliseconds; model files and logs opened later count too). Over
 * the limit, new requests are refused with 503 and `Connection: close` until idle connections time
 * out, so the process keeps descriptors for its models, database and the clients already served.
 */
export class ConnectionGuard {
  private over = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private baseline = 0;

  constructor(private readonly limit: number, private readonly intervalMs = 500) {}

  start(): void {
    this.baseline = openFiles() ?? 0;
    this.timer = setInterval(() => this.poll(), this.intervalMs);
    this.timer.unref?.();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  poll(): void {
    const files = openFiles();
    if (files === undefined) return;
    const open = files - this.baseline;
    const over = open > this.limit;
    if (over && !this.over) log.warn("too many open connections: refusing new requests with 503 until idle ones time out", { open, limit: this.limit, setting: "--max-connections" });
    if (!over && this.over) log.info("open connections back under the limit", { open, limit: this.limit });
    this.over = over;
  }

  check(): void {
    if (this.over) throw new OverloadedError(`the server has more than ${this.limit} connections open (--max-connections); retry shortly`);
  }
}

// Download progress: bytes done across files, a smoothed rate and the time left.

export interface DownloadProgress {
  repo: string;
  /** The file being transferred, or null between files. */
  file: string | null;
  fileBytesDone: number;
  fileBytesTotal: number;
  filesDone: number;
  filesTotal: number;
  /** Bytes of all requested files that are on disk, including ones already cached or resumed. */
  bytesDone: number;
  bytesTotal: number;
  /** Transfer rate of this run, exponentially smoothed. 0 until measured. */
  bytesPerSecond: number;
  /** Seconds left at the current rate, or null while the rate is unknown. */
  etaSeconds: number | null;
  /** Set while a failed or stalled request waits for its retry, e.g. "no data for 20 s, retrying 2/5". */
  retrying: string | null;
}

export class ProgressTracker {
  private transferred = 0;
  private rate = 0;
  private lastSampleAt: number;
  private lastSampleBytes = 0;
  private lastEmit = 0;
  private readonly startedAt: number;
  bytesDone = 0;
  filesDone = 0;
  file: string | null = null;
  fileBytesDone = 0;
  fileBytesTotal = 0;
  private retryNote: string | null = null;

  constructor(
    private readonly repo: string,
    readonly bytesTotal: number,
    readonly filesTotal: number,
    private readonly intervalMs: number,
    private readonly onProgress: ((p: DownloadProgress) => void) | undefined,
  ) {
    this.startedAt = this.lastSampleAt = performance.now();
  }

  get transferredBytes(): number {
    return this.transferred;
  }

  startFile(file: string, have: number, total: number): void {
    this.file = file;
    this.fileBytesDone = have;
    this.fileBytesTotal = total;
    this.bytesDone += have;
    this.emit(true);
  }

  /** The partial file was discarded (server ignored Range, or a restart): take its bytes back. */
  rewindFile(): void {
    this.bytesDone -= this.fileBytesDone;
    this.fileBytesDone = 0;
  }

  /** A request failed and will be retried: say so now, not only when bytes flow again. */
  retrying(note: string): void {
    this.retryNote = note;
    this.emit(true);
  }

  add(n: number): void {
    this.retryNote = null;
    this.transferred += n;
    this.bytesDone += n;
    this.fileBytesDone += n;
    this.emit(false);
  }

  finishFile(fromCacheBytes: number): void {
    this.bytesDone += fromCacheBytes;
    this.filesDone++;
    this.file = null;
    this.fileBytesDone = this.fileBytesTotal = 0;
    this.emit(true);
  }

  private sample(now: number): void {
    const dt = (now - this.lastSampleAt) / 1000;
    // Sampling windows under half a second are dominated by chunk timing noise.
    if (dt < 0.5) {
      if (this.rate === 0 && now > this.startedAt) this.rate = (this.transferred / (now - this.startedAt)) * 1000;
      return;
    }
    const instant = (this.transferred - this.lastSampleBytes) / dt;
    this.rate = this.rate === 0 ? instant : 0.3 * instant + 0.7 * this.rate;
    this.lastSampleAt = now;
    this.lastSampleBytes = this.transferred;
  }

  emit(force: boolean): void {
    if (!this.onProgress) return;
    const now = performance.now();
    if (!force && now - this.lastEmit < this.intervalMs) return;
    this.lastEmit = now;
    if (this.transferred > 0) this.sample(now);
    const left = Math.max(0, this.bytesTotal - this.bytesDone);
    this.onProgress({
      repo: this.repo,
      file: this.file,
      fileBytesDone: this.fileBytesDone,
      fileBytesTotal: this.fileBytesTotal,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      bytesPerSecond: Math.round(this.rate),
      etaSeconds: left === 0 ? 0 : this.rate > 0 ? left / this.rate : null,
      retrying: this.retryNote,
    });
  }
}

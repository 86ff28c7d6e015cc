import { existsSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { ModelDescriptor, ModelInfo } from "../engines/types.ts";
import { errorMessage, HubAuthError, HubNotFoundError, HubUnavailableError, InvalidRequestError, LmxError, UsageError } from "../errors.ts";
import { snapshotPath } from "../hub/cache.ts";
import { downloadFiles } from "../hub/download.ts";
import { hubLib, isHubApiError } from "../hub/hub-lib.ts";
import { timeoutFetch } from "../hub/hub-request.ts";
import { parsePullSpec, selectFiles, type RepoFile } from "../hub/select.ts";
import { ModelRegistry } from "../models/registry.ts";
import type { FileRemover } from "../admin/model-manager.ts";
import type { Db } from "../store/db.ts";
import type { DownloadJob, JobExecutor } from "./jobs.ts";

export interface HubSettings {
  hubUrl: string;
  token: string | undefined;
  cacheDir: string;
}

const SHARD = /-(\d{5})-of-(\d{5})\.gguf$/i;
/** Each listing request, body included, is bounded: a hub that stalls fails the job instead of holding it. */
const LISTING_FETCH = timeoutFetch(fetch, 30_000);

function hubError(err: unknown, repo: string, hubUrl: string): Error {
  if (err instanceof LmxError) return err;
  if (isHubApiError(err)) {
    if (err.statusCode === 401 || err.statusCode === 403) return new HubAuthError(`authentication required for ${repo}: set HF_TOKEN to a token that can read it (HTTP ${err.statusCode})`);
    if (err.statusCode === 404) return new HubNotFoundError(`repository ${repo} not found on ${hubUrl}`);
    return new HubUnavailableError(`the hub at ${hubUrl} failed listing ${repo}: HTTP ${err.statusCode} ${err.message}`);
  }
  return new HubUnavailableError(`cannot reach the hub at ${hubUrl}: ${errorMessage(err)}`);
}

/** Runs pull jobs against the Hugging Face Hub (or a mirror), storing files in the standard hub cache. */
export class HubExecutor implements JobExecutor, FileRemover {
  constructor(
    private readonly hub: HubSettings,
    private readonly inspect: (d: ModelDescriptor) => Promise<ModelInfo>,
  ) {}

  validate(spec: string): { repo: string } {
    try {
      return { repo: parsePullSpec(spec).repo };
    } catch (err) {
      if (err instanceof UsageError) throw new InvalidRequestError(err.message, "model");
      throw err;
    }
  }

  private async listing(repo: string, revision: string): Promise<RepoFile[]> {
    const files: RepoFile[] = [];
    try {
      for await (const f of (await hubLib()).listFiles({ repo: { type: "model", name: repo }, revision, recursive: true, hubUrl: this.hub.hubUrl, accessToken: this.hub.token, fetch: LISTING_FETCH })) {
        if (f.type === "file") files.push({ path: f.path, size: f.lfs?.size ?? f.size });
      }
    } catch (err) {
      throw hubError(err, repo, this.hub.hubUrl);
    }
    return files;
  }

  async run(job: DownloadJob, ctx: Parameters<JobExecutor["run"]>[1]): Promise<void> {
    const spec = parsePullSpec(job.spec);
    const selection = selectFiles(spec.repo, await this.listing(spec.repo, job.revision), { quant: spec.quant, file: spec.file });
    ctx.onPlan(selection.files.map((f) => ({ path: f.path, size: f.size })), selection.reason);
    const result = await downloadFiles({
      repo: spec.repo,
      revision: job.revision,
      files: selection.files.map((f) => f.path),
      hubUrl: this.hub.hubUrl,
      token: this.hub.token,
      cacheDir: this.hub.cacheDir,
      signal: ctx.signal,
      onProgress: (p) => ctx.onProgress({ file: p.file, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal, bytesPerSecond: p.bytesPerSecond, etaSeconds: p.etaSeconds, retrying: p.retrying }),
    });

    const first = result.files[0]!;
    const path = selection.format === "gguf" ? first.path : result.snapshotDir;
    const name = spec.repo.split("/")[1]!;
    const id = selection.format === "gguf" ? first.file.split("/").pop()!.replace(SHARD, "").replace(/\.gguf$/i, "") : name;
    let info: Partial<ModelInfo> = {};
    if (selection.format === "gguf") info = await this.inspect({ id, format: "gguf", path });
    else {
      try {
        const config = JSON.parse(readFileSync(join(path, "config.json"), "utf8")) as { model_type?: string; max_position_embeddings?: number };
        info = { architecture: config.model_type, declaredContextLength: config.max_position_embeddings };
      } catch {
        // An MLX repo without a readable config.json still registers; the engine will say what is wrong.
      }
    }
    const aliases = [spec.repo, ...(selection.quant ? [`${spec.repo}:${selection.quant}`] : [])];
    ctx.finish((tx: Db) => {
      const registry = new ModelRegistry(tx);
      // Aliases other models already use stay theirs.
      const taken = registry.aliases();
      let finalId = id;
      for (let n = 2; registry.get(finalId) && registry.get(finalId)!.sourceRepo !== spec.repo; n++) finalId = `${id}-${n}`;
      registry.upsert({
        id: finalId, format: selection.format, path, origin: "download", sourceRepo: spec.repo, revision: result.commit,
        files: result.files.map((f) => ({ path: f.file, size: f.size, sha256: f.sha256 ?? undefined })),
        sizeBytes: result.files.reduce((a, f) => a + f.size, 0),
        architecture: info.architecture ?? null, quantization: info.quantization ?? selection.quant, declaredContext: info.declaredContextLength ?? null,
        aliases: aliases.filter((a) => !taken.has(a) || taken.get(a) === finalId),
      });
      return finalId;
    });
  }

  /** Deletes a downloaded model's snapshot links and the blobs they point at. */
  removeModelFiles(model: { sourceRepo: string | null; revision: string | null; files: { path: string }[] }): void {
    if (!model.sourceRepo || !model.revision) return;
    for (const f of model.files) {
      const link = snapshotPath(this.hub.cacheDir, model.sourceRepo, model.revision, f.path);
      try {
        const target = resolve(dirname(link), readlinkSync(link));
        rmSync(target, { force: true });
      } catch {
        // Not a symlink (a copy-mode cache) or already gone: removing the path below is enough.
      }
      if (existsSync(link)) rmSync(link, { force: true });
    }
  }
}

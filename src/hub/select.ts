// Choosing which files of a repo to download for a pull spec like `org/repo:Q4_K_M`.
//
// GGUF repos hold one model in many quantizations (and sometimes split into shards); we pick one
// quantization. MLX repos hold one model as a whole snapshot (config, tokenizer, safetensors); we
// take all of it.

import { NoMatchingFileError, UsageError } from "../errors.ts";
import { validateRepoId, validateRepoPath } from "./names.ts";

export type RepoFormat = "gguf" | "mlx";

export interface RepoFile {
  path: string;
  size: number;
}

export interface PullSpec {
  repo: string;
  /** Upper-cased quant tag, e.g. "Q4_K_M". */
  quant?: string;
  /** A file path inside the repo (a `.gguf`, or any path containing '/'). */
  file?: string;
}

export const DEFAULT_QUANT = "Q4_K_M";

// People paste what the hub's UI and other tools show; accept those spellings of a repo.
const REPO_PREFIXES = [/^https?:\/\/(?:www\.)?huggingface\.co\//i, /^https?:\/\/hf\.co\//i, /^huggingface\.co\//i, /^hf\.co\//i];

/**
 * Parses `org/repo`, `org/repo:QUANT` or `org/repo:path/to/file.gguf` (an `hf.co/` or
 * `https://huggingface.co/` prefix is accepted). Throws UsageError / UnsafePathError naming the bad part.
 */
export function parsePullSpec(spec: string): PullSpec {
  let rest = spec.trim();
  for (const prefix of REPO_PREFIXES) rest = rest.replace(prefix, "");
  const colon = rest.indexOf(":");
  const repo = colon < 0 ? rest : rest.slice(0, colon);
  const suffix = colon < 0 ? "" : rest.slice(colon + 1);
  validateRepoId(repo);
  if (colon < 0) return { repo };
  if (suffix === "") throw new UsageError(`pull spec ${JSON.stringify(spec)}: nothing after ':' (want a quant like Q4_K_M or a file name)`);
  if (/\.gguf$/i.test(suffix) || suffix.includes("/")) return { repo, file: validateRepoPath(suffix) };
  if (!/^[A-Za-z0-9_-]+$/.test(suffix)) throw new UsageError(`pull spec ${JSON.stringify(spec)}: ${JSON.stringify(suffix)} is neither a quant tag nor a .gguf file`);
  return { repo, quant: suffix.toUpperCase() };
}

// ---- quant tags ----

const SHARD = /-(\d{5})-of-(\d{5})(\.gguf)$/i;
// A quant tag is a whole dash/dot/underscore-separated token of the file name: Q4_K_M, IQ4_XS,
// Q8_0, TQ1_0, F16, BF16, MXFP4, unsloth's UD-Q4_K_XL...
const QUANT = /(?:^|[-._])((?:UD-)?(?:I?Q\d(?:_[0-9A-Z]+)*|TQ\d_\d|BF16|F16|FP16|F32|FP32|MXFP4))(?=$|[-._])/i;

/** The quant tag of a GGUF file name (upper-cased), from its name or else its folder, or null. */
export function quantOf(path: string): string | null {
  const parts = path.split("/");
  for (let i = parts.length - 1; i >= 0; i--) {
    const name = (parts[i] ?? "").replace(SHARD, "$3").replace(/\.gguf$/i, "");
    const m = QUANT.exec(name);
    if (m?.[1]) return m[1].toUpperCase().replace(/^FP16$/, "F16").replace(/^FP32$/, "F32");
  }
  return null;
}

// Approximate bits per weight (llama.cpp's quantize table), used to rank quants by closeness.
const BITS: Record<string, number> = {
  IQ1_S: 1.56, IQ1_M: 1.75, TQ1_0: 1.69, TQ2_0: 2.06,
  IQ2_XXS: 2.06, IQ2_XS: 2.31, IQ2_S: 2.5, IQ2_M: 2.7, Q2_K_S: 2.6, Q2_K: 2.96,
  IQ3_XXS: 3.06, IQ3_XS: 3.3, IQ3_S: 3.44, IQ3_M: 3.66, Q3_K_S: 3.5, Q3_K_M: 3.91, Q3_K_L: 4.27,
  IQ4_XS: 4.25, IQ4_NL: 4.5, MXFP4: 4.25, Q4_0: 4.55, Q4_1: 5.0, Q4_K_S: 4.58, Q4_K_M: 4.89, Q4_K_L: 4.95,
  Q5_0: 5.54, Q5_1: 6.0, Q5_K_S: 5.54, Q5_K_M: 5.69, Q5_K_L: 5.75,
  Q6_K: 6.56, Q6_K_L: 6.6, Q8_0: 8.5, F16: 16, BF16: 16, F32: 32,
};

interface QuantShape {
  /** 1..8 for the integer quants, 16 or 32 for float types. */
  bits: number;
  kind: "k" | "legacy" | "i" | "float" | "other";
  /** Size suffix: S, M, L, XS, XXS, NL... or "" */
  size: string;
  bpw: number;
}

function shapeOf(quant: string): QuantShape | null {
  const q = quant.replace(/^UD-/, "");
  const float = /^(B?F)(16|32)$/.exec(q);
  if (float) return { bits: Number(float[2]), kind: "float", size: float[1] === "BF" ? "B" : "", bpw: Number(float[2]) };
  if (q === "MXFP4") return { bits: 4, kind: "other", size: "", bpw: 4.25 };
  const m = /^(I|T)?Q(\d)(?:_(K))?(?:_(\w+))?$/.exec(q);
  if (!m) return null;
  const bits = Number(m[2]);
  const kind = m[1] === "I" ? "i" : m[1] === "T" ? "other" : m[3] ? "k" : "legacy";
  const size = m[4] ?? "";
  return { bits, kind, size, bpw: BITS[q] ?? bits + 0.5 };
}

/**
 * Orders the available quants by how good a substitute each is for `wanted`:
 *
 *  1. the same bit width first (Q4_K_M → Q4_K_L, Q4_K_S, Q4_0, Q4_1, IQ4_NL, IQ4_XS),
 *  2. then wider ones, narrowest first (Q5_K_M, Q5_K_S, Q5_0 → Q6_K → Q8_0 → F16 → BF16 → F32):
 *     they keep the quality asked for and only cost memory, which search/fit checks report,
 *  3. then narrower ones, widest first (Q3_K_M → Q2_K → IQ1_S): the last resort.
 *
 * Within one bit width: the same family (K-quant, legacy, i-quant) first, then the same size
 * suffix (_M for _M), then the closest bits per weight, then the name.
 */
export function rankQuants(wanted: string, available: readonly string[]): string[] {
  const w = shapeOf(wanted);
  if (!w) return [...available].sort();
  const key = (q: string): number[] => {
    const s = shapeOf(q);
    if (!s) return [3, 0, 0, 0, 0, 0];
    const group = s.bits === w.bits ? 0 : s.bits > w.bits ? 1 : 2;
    const widthOrder = group === 1 ? s.bits : group === 2 ? -s.bits : 0;
    // Last: plain F16 before BF16 when neither was asked for; every GPU and CPU path handles F16.
    const floatPref = s.kind === "float" && s.size !== w.size && s.size === "B" ? 1 : 0;
    return [group, widthOrder, s.kind === w.kind ? 0 : 1, s.size === w.size ? 0 : 1, Math.abs(s.bpw - w.bpw), floatPref];
  };
  return [...available].sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let i = 0; i < ka.length; i++) {
      const d = (ka[i] ?? 0) - (kb[i] ?? 0);
      if (d !== 0) return d;
    }
    return a < b ? -1 : a > b ? 1 : 0;
  });
}

// ---- formats ----

const MMPROJ = /(^|\/)[^/]*mmproj[^/]*\.gguf$/i;

function isGguf(path: string): boolean {
  return /\.gguf$/i.test(path);
}

export function isMmproj(path: string): boolean {
  return MMPROJ.test(path);
}

/** "gguf" if the repo has model GGUFs, "mlx" if it has config.json plus safetensors, else null. */
export function detectFormat(files: readonly RepoFile[]): RepoFormat | null {
  if (files.some((f) => isGguf(f.path) && !isMmproj(f.path))) return "gguf";
  const hasConfig = files.some((f) => f.path === "config.json");
  if (hasConfig && files.some((f) => /\.safetensors$/i.test(f.path))) return "mlx";
  return null;
}

// ---- selection ----

export interface Selection {
  repo: string;
  format: RepoFormat;
  /** Files to download, in a stable order (split shards in shard order). */
  files: RepoFile[];
  totalBytes: number;
  /** The quant picked (GGUF only; null for a GGUF with no quant tag). */
  quant: string | null;
  /** What was asked for: the spec's quant, or DEFAULT_QUANT when the spec named none. */
  requestedQuant: string | null;
  /** True when the requested quant was absent and another was chosen. */
  fallback: boolean;
  /** One line for the user, e.g. "Q4_K_M not in repo, using Q5_K_M". */
  reason: string;
  /** Every quant the repo offers (GGUF), sorted. */
  availableQuants: string[];
  /** The projector file included for vision models, if asked for and present. */
  mmproj: RepoFile | null;
}

export interface SelectOptions {
  quant?: string;
  file?: string;
  /** Also pick the vision projector (mmproj) of a multimodal GGUF repo. */
  includeMmproj?: boolean;
  /** For repos that hold both GGUF and MLX weights; default "gguf" because it runs everywhere. */
  prefer?: RepoFormat;
}

interface GgufGroup {
  /** Path with the shard suffix removed: the model's identity. */
  key: string;
  files: RepoFile[];
  quant: string | null;
  /** Declared shard count (1 for unsplit files). */
  shards: number;
}

function groupGgufs(files: readonly RepoFile[]): GgufGroup[] {
  const groups = new Map<string, GgufGroup>();
  for (const f of files) {
    if (!isGguf(f.path) || isMmproj(f.path)) continue;
    const shard = SHARD.exec(f.path);
    const key = f.path.replace(SHARD, "$3");
    let g = groups.get(key);
    if (!g) {
      g = { key, files: [], quant: quantOf(f.path), shards: shard ? Number(shard[2]) : 1 };
      groups.set(key, g);
    }
    g.files.push(f);
  }
  for (const g of groups.values()) g.files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return [...groups.values()];
}

function checkComplete(repo: string, g: GgufGroup): void {
  if (g.files.length !== g.shards) {
    throw new NoMatchingFileError(`${repo}: ${g.key} is split into ${g.shards} shards but the repo has ${g.files.length} of them`);
  }
}

function sum(files: readonly RepoFile[]): number {
  return files.reduce((n, f) => n + f.size, 0);
}

function describeGguf(groups: readonly GgufGroup[]): string {
  return groups.map((g) => (g.shards > 1 ? `${g.files[0]?.path} (+${g.shards - 1} shards)` : g.key)).join(", ");
}

// Among several files with the same quant (e.g. in the root and in a subfolder), prefer the one
// nearest the root, then the shortest name: variants usually add suffixes.
function pickGroup(groups: GgufGroup[]): GgufGroup {
  const sorted = [...groups].sort((a, b) => {
    const da = a.key.split("/").length;
    const db = b.key.split("/").length;
    return da - db || a.key.length - b.key.length || (a.key < b.key ? -1 : 1);
  });
  const first = sorted[0];
  if (!first) throw new Error("pickGroup on an empty list");
  return first;
}

function pickMmproj(files: readonly RepoFile[]): RepoFile | null {
  const all = files.filter((f) => isMmproj(f.path));
  if (all.length === 0) return null;
  // F16 projectors are the reference ones llama.cpp documents; quantized projectors lose accuracy.
  const rank = (f: RepoFile) => {
    const q = quantOf(f.path) ?? "";
    return q === "F16" ? 0 : q === "BF16" ? 1 : q === "F32" ? 2 : 3;
  };
  return [...all].sort((a, b) => rank(a) - rank(b) || (a.path < b.path ? -1 : 1))[0] ?? null;
}

function selectGguf(repo: string, files: readonly RepoFile[], opts: SelectOptions): Selection {
  const groups = groupGgufs(files);
  const availableQuants = [...new Set(groups.map((g) => g.quant).filter((q): q is string => q !== null))].sort();
  const mmproj = opts.includeMmproj ? pickMmproj(files) : null;
  const done = (g: GgufGroup, requestedQuant: string | null, fallback: boolean, reason: string): Selection => {
    checkComplete(repo, g);
    const chosen = mmproj ? [...g.files, mmproj] : g.files;
    return { repo, format: "gguf", files: chosen, totalBytes: sum(chosen), quant: g.quant, requestedQuant, fallback, reason, availableQuants, mmproj };
  };

  if (opts.file) {
    const wanted = opts.file.replace(SHARD, "$3");
    const g = groups.find((x) => x.key === wanted || x.key.toLowerCase() === wanted.toLowerCase());
    if (!g) {
      throw new NoMatchingFileError(`${repo} has no file ${opts.file}; its GGUF files are: ${describeGguf(groups) || "(none)"}`);
    }
    return done(g, null, false, g.shards > 1 ? `${g.key} (${g.shards} shards)` : `file ${g.key}`);
  }

  const requested = (opts.quant ?? DEFAULT_QUANT).toUpperCase();
  const exact = groups.filter((g) => g.quant === requested || g.quant?.replace(/^UD-/, "") === requested);
  if (exact.length > 0) return done(pickGroup(exact), requested, false, `${requested}`);

  const tagged = groups.filter((g) => g.quant !== null);
  if (tagged.length === 0) {
    // A repo with a single untagged GGUF (e.g. ggml-org/tiny-llamas' stories260K.gguf) has only
    // one thing to give, whatever quant was asked for.
    if (groups.length === 1 && groups[0]) return done(groups[0], requested, opts.quant !== undefined, `${groups[0].key} (the repo's only GGUF, no quant tag in its name)`);
    throw new NoMatchingFileError(`${repo} has several GGUF files and none has a quant tag in its name; name one as ${repo}:FILE.gguf: ${describeGguf(groups)}`);
  }
  if (!shapeOf(requested)) {
    throw new NoMatchingFileError(`${repo}: ${requested} is not a quant type; available: ${availableQuants.join(", ")}`);
  }
  const best = rankQuants(requested, availableQuants)[0];
  const g = best === undefined ? undefined : pickGroup(tagged.filter((x) => x.quant === best));
  if (!g || !best) throw new NoMatchingFileError(`${repo} has no ${requested}; available: ${availableQuants.join(", ")}`);
  return done(g, requested, true, `${requested} not in repo, using ${best}`);
}

// What an MLX snapshot does not need: git metadata, docs media, and weights in other formats
// (MLX loads safetensors only, and repos sometimes carry a PyTorch or GGUF copy too).
const MLX_SKIP = [
  /(^|\/)\.git[^/]*$/i,
  /\.(png|jpe?g|gif|webp|svg|bmp|mp4|webm)$/i,
  /\.(gguf|bin|pt|pth|ckpt|onnx|onnx_data|h5|msgpack|ot|tflite|mlmodel)$/i,
];

function selectMlx(repo: string, files: readonly RepoFile[], opts: SelectOptions): Selection {
  if (opts.quant) {
    throw new NoMatchingFileError(`${repo} is an MLX repo; its quantization is fixed by the repo (e.g. a -4bit repo), so :${opts.quant} cannot be chosen`);
  }
  if (opts.file) {
    throw new NoMatchingFileError(`${repo} is an MLX repo, which is pulled whole; drop :${opts.file} from the spec`);
  }
  const chosen = files.filter((f) => !MLX_SKIP.some((re) => re.test(f.path)));
  chosen.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return {
    repo, format: "mlx", files: chosen, totalBytes: sum(chosen), quant: null, requestedQuant: null, fallback: false,
    reason: `MLX snapshot, ${chosen.length} files`, availableQuants: [], mmproj: null,
  };
}

/**
 * Picks the files to download from a repo listing. Throws NoMatchingFileError (listing what the
 * repo does have) when nothing fits.
 */
export function selectFiles(repo: string, files: readonly RepoFile[], opts: SelectOptions = {}): Selection {
  const hasGguf = files.some((f) => isGguf(f.path) && !isMmproj(f.path));
  const hasMlx = files.some((f) => f.path === "config.json") && files.some((f) => /\.safetensors$/i.test(f.path));
  const wantsGgufFile = opts.file !== undefined && isGguf(opts.file);
  if (hasGguf && (!hasMlx || opts.prefer !== "mlx" || opts.quant !== undefined || wantsGgufFile)) return selectGguf(repo, files, opts);
  if (hasMlx) return selectMlx(repo, files, opts);
  const shown = files.slice(0, 30).map((f) => f.path).join(", ");
  throw new NoMatchingFileError(
    `${repo} has no GGUF files and is not an MLX model (config.json + *.safetensors); files: ${shown || "(none)"}${files.length > 30 ? ", ..." : ""}`,
  );
}

// Where a first model load's time goes, in process and without LMX: node-llama-cpp's getLlama()
// (on Linux it tests its prebuilt binary in a child process on every call), GGUF reading, the
// memory estimate, loadModel and an 8 × 4096-token context, then the same load again.
//
//   bun bench/experiments/load-time.ts MODEL.gguf

import { GgufInsights, getLlama, LlamaLogLevel, readGgufFileInfo } from "node-llama-cpp";

const path = process.argv[2];
if (!path) throw new Error("usage: bun bench/experiments/load-time.ts MODEL.gguf");
let t = performance.now();
const lap = (what: string) => {
  const now = performance.now();
  console.log(`${what.padEnd(28)} ${(now - t).toFixed(1)} ms`);
  t = now;
};
const llama = await getLlama({ gpu: false, build: "never", maxThreads: 0, logLevel: LlamaLogLevel.error });
lap("getLlama");
const info = await readGgufFileInfo(path, { readTensorInfo: true });
lap("readGgufFileInfo");
const insights = await GgufInsights.from(info, llama);
insights.estimateModelResourceRequirements({ gpuLayers: 0 });
lap("memory estimate");
for (const round of ["first", "again"]) {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  lap(`loadModel (${round})`);
  const context = await model.createContext({ contextSize: 4096, sequences: 8, threads: { ideal: 2, min: 2 } });
  lap(`createContext 8×4096 (${round})`);
  await context.dispose();
  await model.dispose();
  t = performance.now();
}
await llama.dispose();

import { ensureReferenceServer } from "./bench/llama-build.ts";
console.log(await ensureReferenceServer());

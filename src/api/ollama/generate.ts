import { Elysia } from "elysia";
import { checkJsonSchema } from "../limits.ts";
import { type GenerationDeps, serveOllama } from "./generation.ts";
import { toGenerateRequest } from "./requests.ts";
import { GenerateBody } from "./schemas.ts";

export function generateRoutes(deps: GenerationDeps) {
  return new Elysia().post("/api/generate", ({ body, request }) => {
    if (typeof body.format === "object" && body.format !== null) checkJsonSchema(body.format, "format");
    return serveOllama(deps, {
      kind: "generate",
      name: body.model,
      stream: body.stream,
      keepAlive: body.keep_alive,
      options: body.options,
      request: () => (body.prompt || body.suffix ? toGenerateRequest(body) : undefined),
    }, request.signal);
  }, {
    body: GenerateBody,
    detail: {
      summary: "Generate (Ollama)",
      tags: ["Ollama"],
      description: "Ollama's completion: the prompt in the model's chat template (after system), or as is with raw; suffix for fill-in-the-middle. A custom template is refused. NDJSON stream unless stream is false.",
    },
  });
}

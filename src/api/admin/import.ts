import { Elysia } from "elysia";
import type { ModelImporter } from "../../models/importer.ts";
import { ImportBody } from "./schemas.ts";

/** `/admin/v1/import`. */
export function adminImportRoutes({ importer }: { importer: ModelImporter }) {
  return new Elysia({ prefix: "/admin/v1" }).post("/import", ({ body }) => importer.run(body), {
    body: ImportBody,
    detail: {
      summary: "Register models from LM Studio, Ollama or given folders without copying them",
      description: "With no body fields, scans LM Studio's and Ollama's folders. Files already registered are skipped.",
      tags: ["Admin"],
    },
  });
}

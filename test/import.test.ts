import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fixtures } from "./fixtures/models.ts";
import { startTestServer } from "./helpers/server.ts";

/** LM Studio and Ollama folders laid out the way those apps write them, holding the real test GGUF. */
function fakeApps() {
  const root = mkdtempSync(join(tmpdir(), "lmx-import-"));
  const lmstudio = join(root, "lmstudio");
  mkdirSync(join(lmstudio, "ggml-org", "tiny-llamas"), { recursive: true });
  copyFileSync(fixtures.stories260K, join(lmstudio, "ggml-org", "tiny-llamas", "stories260K.gguf"));
  writeFileSync(join(lmstudio, "ggml-org", "tiny-llamas", "mmproj-stories.gguf"), "not a model");

  const ollama = join(root, "ollama");
  const bytes = readFileSync(fixtures.stories260K);
  const digest = createHash("sha256").update(bytes).digest("hex");
  mkdirSync(join(ollama, "blobs"), { recursive: true });
  writeFileSync(join(ollama, "blobs", `sha256-${digest}`), bytes);
  mkdirSync(join(ollama, "manifests", "registry.ollama.ai", "library", "tinystories"), { recursive: true });
  writeFileSync(join(ollama, "manifests", "registry.ollama.ai", "library", "tinystories", "260k"), JSON.stringify({
    schemaVersion: 2,
    layers: [
      { mediaType: "application/vnd.ollama.image.model", digest: `sha256:${digest}`, size: bytes.length },
      { mediaType: "application/vnd.ollama.image.template", digest: "sha256:" + "0".repeat(64), size: 10 },
    ],
  }));

  const folder = join(root, "mine");
  mkdirSync(join(folder, "mlx-model"), { recursive: true });
  copyFileSync(fixtures.stories260K, join(folder, "my-story.gguf"));
  writeFileSync(join(folder, "mlx-model", "config.json"), JSON.stringify({ model_type: "llama" }));
  writeFileSync(join(folder, "mlx-model", "model.safetensors"), "");
  return { lmstudio, ollama, folder };
}

describe("lmx import", () => {
  test("registers LM Studio and Ollama models without copying, once", async () => {
    const apps = fakeApps();
    await using srv = await startTestServer(["--lmstudio-dir", apps.lmstudio, "--ollama-dir", apps.ollama]);
    const first = (await (await srv.request("/admin/v1/import", { method: "POST", json: {} })).json()) as { imported: { id: string; path: string; source: string }[] };
    expect(first.imported.map((m) => [m.id, m.source]).sort()).toEqual([["stories260K", "lmstudio"], ["tinystories:260k", "ollama"]]);
    expect(first.imported.find((m) => m.source === "ollama")!.path).toStartWith(join(apps.ollama, "blobs"));
    const again = (await (await srv.request("/admin/v1/import", { method: "POST", json: {} })).json()) as { imported: unknown[]; skipped: { reason: string }[] };
    expect(again.imported).toEqual([]);
    expect(again.skipped.every((s) => s.reason.startsWith("already registered"))).toBe(true);

    // Imported models serve like any other.
    const chat = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "tinystories:260k", messages: [{ role: "user", content: "Hi" }], max_tokens: 3 } });
    expect(chat.status).toBe(200);
    const show = (await (await srv.request("/admin/v1/models/tinystories:260k")).json()) as { origin: string; architecture: string };
    expect(show).toMatchObject({ origin: "import", architecture: "llama" });

    // rm forgets an imported model but never deletes another app's files.
    const rm = (await (await srv.request("/admin/v1/models/stories260K", { method: "DELETE" })).json()) as { files_deleted: boolean };
    expect(rm.files_deleted).toBe(false);
    expect(readFileSync(join(apps.lmstudio, "ggml-org", "tiny-llamas", "stories260K.gguf")).length).toBeGreaterThan(0);
  });

  test("a given folder: GGUFs and MLX folders; an MLX model without the MLX runtime gets a clear error", async () => {
    const apps = fakeApps();
    await using srv = await startTestServer([]);
    const r = (await (await srv.request("/admin/v1/import", { method: "POST", json: { paths: [apps.folder] } })).json()) as { imported: { id: string }[] };
    expect(r.imported.map((m) => m.id).sort()).toEqual(["mlx-model", "my-story"]);
    const chat = await srv.request("/v1/chat/completions", { method: "POST", json: { model: "mlx-model", messages: [{ role: "user", content: "Hi" }] } });
    expect(chat.status).toBe(503);
    expect(((await chat.json()) as { error: { code: string } }).error.code).toBe("runtime_not_installed");
    const missing = await srv.request("/admin/v1/import", { method: "POST", json: { paths: ["/no/such/dir"] } });
    expect(missing.status).toBe(400);
  });
});

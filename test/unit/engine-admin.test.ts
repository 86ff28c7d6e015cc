// /admin/v1/engines on the fake app, which runs from source like the tests: the list names the
// node_modules engine in use, and every change is refused with the reason and a 409 in the OpenAI
// error shape, leaving the selection alone. test/release.test.ts drives the same routes on the
// compiled executable, where engines can be installed and switched for real.

import { describe, expect, test } from "bun:test";
import { fakeApp } from "../fakes/fake-app.ts";

interface ErrorJson { error: { code: string; message: string; param?: string | null } }

describe("/admin/v1/engines from source", () => {
  test("lists the engine in use; update and use are refused with the reason", async () => {
    await using app = fakeApp([{ id: "m" }]);
    const list = (await (await app.request("/admin/v1/engines")).json()) as { object: string; active: string; data: { version: string; selected: boolean }[] };
    expect(list.object).toBe("list");
    expect(list.data.some((r) => r.selected)).toBe(true);
    const saved = process.env.LMX_UPDATE_BASE_URL;
    delete process.env.LMX_UPDATE_BASE_URL;
    try {
      const update = await app.post("/admin/v1/engines/update", {});
      expect(update.status).toBe(409);
      expect(((await update.json()) as ErrorJson).error).toMatchObject({ code: "engine_update_failed", message: expect.stringContaining("LMX_UPDATE_BASE_URL") });
    } finally {
      if (saved !== undefined) process.env.LMX_UPDATE_BASE_URL = saved;
    }
    const use = await app.post("/admin/v1/engines/use", { version: "3.21.1" });
    expect(use.status).toBe(409);
    expect(((await use.json()) as ErrorJson).error.message).toContain("runs from source");
  });

  test("a version that is not one is a 400 naming the field", async () => {
    await using app = fakeApp([{ id: "m" }]);
    for (const body of [{ version: "../../etc" }, { version: "3.21.1 --force" }, {}]) {
      const r = await app.post("/admin/v1/engines/use", body);
      expect(r.status).toBe(400);
    }
    expect((await app.post("/admin/v1/engines/update", { version: "x y" })).status).toBe(400);
  });
});

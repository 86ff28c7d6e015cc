// Reading Responses API answers in tests: JSON bodies, OpenAI-shaped errors, and SSE events.
import { expect } from "bun:test";
import type { ChatGeneration } from "../../src/core/request.ts";
import type { FakeApp } from "../fakes/fake-app.ts";

// Wire JSON, read loosely: the assertions themselves check its shape.
export type Json = Record<string, any>;

export async function json(res: Response): Promise<Json> {
  return (await res.json()) as Json;
}

export async function expectError(res: Response, status: number, fields: Json): Promise<Json> {
  expect(res.status).toBe(status);
  const body = await json(res);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(body.error).toMatchObject(fields);
  return body.error;
}

/** The SSE events: each block's `event:` name and its data; the name must equal data.type, and no [DONE]. */
export async function events(res: Response): Promise<Json[]> {
  expect(res.headers.get("content-type")).toContain("text/event-stream");
  const raw = await res.text();
  expect(raw).not.toContain("[DONE]");
  return raw.split("\n\n").filter((b) => b.trim()).map((block) => {
    const name = /^event: (.+)$/m.exec(block)?.[1];
    const data = JSON.parse(/^data: (.+)$/m.exec(block)![1]!) as Json;
    expect(name).toBe(data.type);
    return data;
  });
}

/** The chat request the fake model received last (what the adapter made of the body). */
export function lastChat(f: FakeApp, model = "m"): ChatGeneration {
  const r = f.engine.model(model).requests.at(-1)!;
  if (r.kind !== "chat") throw new Error("not a chat request");
  return r;
}

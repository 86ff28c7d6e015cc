// The coordinator's calls to other LMX nodes' admin API (with the admin key it holds for each).
import { errorMessage } from "../errors.ts";
import { readBounded } from "../peers/bounded.ts";

/** Admin answers about a group are small; a node that sends more is not answering this API. */
const MAX_ANSWER_BYTES = 1 << 20;

export interface NodeRef {
  name: string;
  url: string;
  key: string | undefined;
}

export type CallResult =
  | { ok: true; status: number; body: Record<string, unknown> }
  | { ok: false; status: number | undefined; message: string; code?: string };

/** One admin call; never throws: an unreachable node, a timeout or a refusal comes back as `ok: false` with a reason. */
export async function callNode(node: NodeRef, method: "GET" | "POST" | "DELETE", path: string, body: unknown, timeoutMs: number): Promise<CallResult> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (node.key) headers.authorization = `Bearer ${node.key}`;
  let res: Response;
  try {
    res = await fetch(node.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs), redirect: "error" });
  } catch (err) {
    const timedOut = err instanceof DOMException && err.name === "TimeoutError";
    return { ok: false, status: undefined, message: timedOut ? `did not answer within ${Math.round(timeoutMs / 1000)} s` : `cannot be reached (${errorMessage(err)})` };
  }
  const text = await readBounded(res, MAX_ANSWER_BYTES).catch(() => undefined);
  let parsed: unknown;
  try {
    parsed = text === undefined ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const obj = parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  if (res.ok && obj) return { ok: true, status: res.status, body: obj };
  const error = obj?.error as { message?: unknown; code?: unknown } | undefined;
  const message = typeof error?.message === "string" ? error.message.slice(0, 2000) : `answered HTTP ${res.status}${res.ok ? " without a JSON object" : ""}`;
  if (res.status === 401 || res.status === 403) return { ok: false, status: res.status, message: `refused our key (${message}); the peer entry needs an admin key of that node`, code: "auth" };
  return { ok: false, status: res.status, message, code: typeof error?.code === "string" ? error.code : undefined };
}

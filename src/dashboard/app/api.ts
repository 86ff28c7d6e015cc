// The dashboard's only way to the server: LMX's public admin and inference APIs, with the key the
// user entered. The key lives in sessionStorage (this tab, until it closes), never anywhere lasting.
import { signal } from "@preact/signals";

const KEY_ITEM = "lmx.key";

export const apiKey = signal<string | null>(sessionStorage.getItem(KEY_ITEM));
/** Set by a 401: the app shows the key prompt. */
export const needsKey = signal(false);
/** Bumped when the key changes, so views load again with it. */
export const keyEpoch = signal(0);

export function rememberKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
  apiKey.value = key;
  needsKey.value = false;
  keyEpoch.value++;
}

export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  if (json) h["content-type"] = "application/json";
  if (apiKey.value) h.authorization = `Bearer ${apiKey.value}`;
  return h;
}

/** The error message of any of LMX's error shapes (OpenAI's, Ollama's, Anthropic's). */
function messageOf(body: unknown, status: number): string {
  const error = (body as { error?: unknown } | null)?.error;
  if (typeof error === "string") return error;
  const message = (error as { message?: unknown } | undefined)?.message;
  return typeof message === "string" ? message : `HTTP ${status}`;
}

async function send(path: string, method: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  const res = await fetch(path, { method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body), signal });
  if (res.status === 401) needsKey.value = true;
  if (!res.ok) {
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: the status says enough
    }
    throw new ApiError(messageOf(parsed, res.status), res.status);
  }
  return res;
}

export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const res = await send(path, init.method ?? "GET", init.body);
  return (await res.json()) as T;
}

export interface SseEvent {
  event: string;
  data: string;
}

/**
 * A Server-Sent Events stream read with fetch (EventSource cannot send the Authorization header).
 * Yields each event until the stream ends or `signal` aborts.
 */
export async function* sse(path: string, init: { method?: string; body?: unknown; signal?: AbortSignal; onOpen?: () => void } = {}): AsyncGenerator<SseEvent> {
  const res = await send(path, init.method ?? "GET", init.body, init.signal);
  init.onOpen?.();
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end: number;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length > 0) yield { event, data: data.join("\n") };
    }
  }
}

export const isAbort = (err: unknown): boolean => err instanceof DOMException && err.name === "AbortError";

import { errorMessage } from "../errors.ts";

/** The server answered with an error (OpenAI-shaped body). */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(readonly status: number, message: string, readonly code: string | null) {
    super(message);
  }
}

/** Nothing listens at the URL. */
export class ServerUnreachableError extends Error {
  override name = "ServerUnreachableError";
}

/** HTTP client of the LMX server: the CLI is a client like any bot (as `ollama pull` is of `ollama serve`). */
export class LmxClient {
  constructor(readonly baseUrl: string, private readonly token?: string) {}

  private headers(json: boolean): Headers {
    const h = new Headers();
    if (json) h.set("content-type", "application/json");
    if (this.token) h.set("authorization", `Bearer ${this.token}`);
    return h;
  }

  async raw(method: string, path: string, body?: unknown, signal?: AbortSignal, extraHeaders?: Record<string, string>): Promise<Response> {
    let res: Response;
    try {
      const headers = this.headers(body !== undefined);
      for (const [k, val] of Object.entries(extraHeaders ?? {})) headers.set(k, val);
      res = await fetch(this.baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ServerUnreachableError(
        `no LMX server answers at ${this.baseUrl} (${errorMessage(err)}). Start one with 'lmx serve', or point at another with --url / LMX_URL.`);
    }
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      let code: string | null = null;
      try {
        const b = (await res.json()) as { error?: { message?: string; code?: string | null } };
        if (b.error?.message) message = b.error.message;
        code = b.error?.code ?? null;
      } catch {
        // Not JSON: keep the status line.
      }
      if (res.status === 401) message += " (set LMX_API_KEY or pass --token)";
      throw new ApiError(res.status, message, code);
    }
    return res;
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await (await this.raw(method, path, body)).json()) as T;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>("GET", path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.call<T>("POST", path, body);
  }

  /** Server-Sent Events from `path`, parsed, until the signal aborts or the server ends the stream. */
  async *events(path: string, signal: AbortSignal): AsyncGenerator<{ event: string; data: unknown }> {
    for await (const e of sseEvents(await this.raw("GET", path, undefined, signal), signal)) yield { event: e.event, data: JSON.parse(e.data) as unknown };
  }

  /** A POST answered with Server-Sent Events (a streamed completion): each event's raw data, e.g. OpenAI's final `[DONE]`. */
  async *postStream(path: string, body: unknown, signal: AbortSignal): AsyncGenerator<{ event: string; data: string }> {
    yield* sseEvents(await this.raw("POST", path, body, signal), signal);
  }
}

async function* sseEvents(res: Response, signal: AbortSignal): AsyncGenerator<{ event: string; data: string }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buf.indexOf("\n\n")) !== -1) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) yield { event, data };
      }
    }
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  } finally {
    // A consumer that stops early (a break) closes the connection, which stops the server's work.
    void reader.cancel().catch(() => undefined);
  }
}

export const encodeId = (id: string) => id.split("/").map(encodeURIComponent).join("/");

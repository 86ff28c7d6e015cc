/** A scripted upstream's SSE answer: `chunks` as they are, `delayMs` apart; `cut` breaks the connection at the end instead of closing it. */
export const sse = (chunks: string[], delayMs = 0, cut = false) => new Response(new ReadableStream<Uint8Array>({
  async start(c) {
    for (const chunk of chunks) {
      c.enqueue(new TextEncoder().encode(chunk));
      if (delayMs) await Bun.sleep(delayMs);
    }
    if (cut) c.error(new Error("connection reset"));
    else c.close();
  },
}), { headers: { "content-type": "text/event-stream" } });

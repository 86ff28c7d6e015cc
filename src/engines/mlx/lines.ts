// Splits a child's output stream into text lines. A line that grows past `maxChars` without a
// newline is handed over as an incomplete piece, so a peer that never ends a line cannot grow memory.

export async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  maxChars: number,
  /** Return false to stop reading. */
  onLine: (line: string, complete: boolean) => boolean,
): Promise<void> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!onLine(line, true)) return;
    }
    if (buf.length > maxChars) {
      const piece = buf;
      buf = "";
      if (!onLine(piece, false)) return;
    }
  }
  if (buf) onLine(buf, false);
}

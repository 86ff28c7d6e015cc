// The id of a Responses API answer passing through, read on the way without holding it up: a
// whole response starts with its `id`, and a streamed one with `response.created`, whose response
// object does too. Only the answer's beginning is read for it.

/** The id is within this many bytes of the answer's start, or it is not looked for further. */
const MAX_SCAN = 64 * 1024;
const FIRST_ID = /"id"\s*:\s*"([A-Za-z0-9_-]{1,256})"/;

/** `body` passed on unchanged; `found` is called once with the first response id it carries. */
export function watchResponseId(body: ReadableStream<Uint8Array>, found: (id: string) => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  let looking = true;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      const { value, done } = await reader.read();
      if (done) {
        c.close();
        return;
      }
      if (looking) {
        seen += decoder.decode(value, { stream: true });
        const id = FIRST_ID.exec(seen)?.[1];
        if (id) found(id);
        if (id || seen.length > MAX_SCAN) {
          looking = false;
          seen = "";
        }
      }
      c.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

// src/api/sse.ts: frames that gather while the reader is behind leave in one write, and each is
// still its own event, in order, followed by the stream's end.
import { describe, expect, test } from "bun:test";
import { onStreamEnd, sseResponse } from "../../src/api/sse.ts";

/** Data lines of every event in `text`. */
const events = (text: string) => text.split("\n\n").filter((block) => block !== "").map((block) => block.replace(/^data: /, ""));

describe("streamResponse", () => {
  test("events queued while a write waits go out together and arrive as separate events in order", async () => {
    let next!: () => void;
    const more = new Promise<void>((resolve) => (next = resolve));
    let finish!: () => void;
    const end = new Promise<void>((resolve) => (finish = resolve));
    const res = await sseResponse(new AbortController().signal, async (send) => {
      send({ n: 0 });
      await more;
      // The first write has not been read yet: these three wait for it.
      for (let n = 1; n <= 3; n++) send({ n });
      await end;
    });
    const reader = res.body!.getReader();
    next();
    await Bun.sleep(0);
    const decoder = new TextDecoder();
    const read = async () => decoder.decode((await reader.read()).value);
    expect(await read()).toBe('data: {"n":0}\n\n');
    // Taking the first write lets the stream ask for more: the three gathered frames, in one write.
    const gathered = await read();
    expect(events(gathered)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
    finish();
    expect(await read()).toBe("data: [DONE]\n\n");
    expect((await reader.read()).done).toBe(true);
  });

  test("a reader that keeps up gets each frame as it is sent", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const res = await sseResponse(new AbortController().signal, async (send) => {
      send({ n: 0 });
      await gate;
      send({ n: 1 });
    });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    expect(decoder.decode((await reader.read()).value)).toBe('data: {"n":0}\n\n');
    // The reader is waiting now: the next frame is written at once, alone.
    const pending = reader.read();
    release();
    expect(decoder.decode((await pending).value)).toBe('data: {"n":1}\n\n');
  });

  test("the end is told to whoever asks, even when the generation finished before they asked", async () => {
    // One event and done: the generation ends while the response is still on its way to the app.
    const res = await sseResponse(new AbortController().signal, async (send) => send({ n: 0 }));
    await Bun.sleep(0);
    let ended = 0;
    expect(onStreamEnd(res, () => ended++)).toBe(true);
    expect(await res.text()).toBe('data: {"n":0}\n\ndata: [DONE]\n\n');
    expect(ended).toBe(1);
    // Not a streamed answer of ours: nothing to tell.
    expect(onStreamEnd(new Response("x"), () => ended++)).toBe(false);
  });
});

import { describe, expect, test } from "bun:test";
import { OverloadedError } from "../src/errors.ts";
import { AbortedWhileQueuedError, Slots } from "../src/scheduler/slots.ts";

describe("Slots", () => {
  test("runs up to capacity, queues FIFO, refuses beyond the queue limit", async () => {
    const s = new Slots(2, 2, "m");
    const r1 = await s.acquire();
    const r2 = await s.acquire();
    const order: number[] = [];
    const w3 = s.acquire().then((r) => { order.push(3); return r; });
    const w4 = s.acquire().then((r) => { order.push(4); return r; });
    expect(s.queued).toBe(2);
    await expect(s.acquire()).rejects.toBeInstanceOf(OverloadedError);
    r1();
    r1(); // releasing twice must not free two slots
    const r3 = await w3;
    expect(s.running).toBe(2);
    expect(s.queued).toBe(1);
    r2();
    const r4 = await w4;
    expect(order).toEqual([3, 4]);
    r3();
    r4();
    expect(s.running).toBe(0);
  });

  test("an aborted waiter leaves the queue and never gets a slot", async () => {
    const s = new Slots(1, 5, "m");
    const r1 = await s.acquire();
    const ac = new AbortController();
    const waiting = s.acquire(ac.signal);
    expect(s.queued).toBe(1);
    ac.abort();
    await expect(waiting).rejects.toBeInstanceOf(AbortedWhileQueuedError);
    expect(s.queued).toBe(0);
    r1();
    expect(s.running).toBe(0);
    const pre = new AbortController();
    pre.abort();
    await expect(s.acquire(pre.signal)).rejects.toBeInstanceOf(AbortedWhileQueuedError);
    expect(s.running).toBe(0);
  });

  test("rejectAll fails every waiter", async () => {
    const s = new Slots(1, 5, "m");
    await s.acquire();
    const a = s.acquire();
    const b = s.acquire();
    s.rejectAll(new Error("unloaded"));
    await expect(a).rejects.toThrow("unloaded");
    await expect(b).rejects.toThrow("unloaded");
  });
});

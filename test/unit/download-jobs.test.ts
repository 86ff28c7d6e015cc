// Download jobs made in the same millisecond (a bot queueing several models at once): the list
// still shows the newest first and the queue still runs them in the order they were made.

import { expect, spyOn, test } from "bun:test";
import { DownloadJobs, type JobExecutor } from "../../src/downloads/jobs.ts";
import { EventBus } from "../../src/events/bus.ts";
import { openDb } from "../../src/store/db.ts";

test("jobs made in one millisecond: listed newest first, run oldest first", async () => {
  const started: string[] = [];
  const gates: (() => void)[] = [];
  const executor: JobExecutor = {
    validate: (spec) => ({ repo: spec }),
    run: (job) => {
      started.push(job.spec);
      return new Promise<void>((resolve) => gates.push(resolve));
    },
  };
  const clock = spyOn(Date, "now").mockReturnValue(1_700_000_000_000);
  try {
    const jobs = new DownloadJobs(openDb(":memory:"), new EventBus(), executor);
    // Ids are random, so only the order of creation can tell these apart.
    for (const spec of ["org/a", "org/b", "org/c", "org/d"]) jobs.create(spec);
    expect(jobs.list().map((j) => j.spec)).toEqual(["org/d", "org/c", "org/b", "org/a"]);
    expect(started).toEqual(["org/a"]);
    for (let i = 0; i < 3; i++) {
      gates.shift()!();
      for (let tries = 0; started.length < i + 2 && tries < 100; tries++) await Bun.sleep(1);
    }
    expect(started).toEqual(["org/a", "org/b", "org/c", "org/d"]);
  } finally {
    clock.mockRestore();
  }
});

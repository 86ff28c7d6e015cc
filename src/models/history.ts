import { desc, eq } from "drizzle-orm";
import type { EventBus } from "../events/bus.ts";
import type { Db } from "../store/db.ts";
import { loadHistory } from "../store/schema.ts";

/** Writes every load, unload, eviction and load failure to SQLite. */
export class LoadHistory {
  private readonly stop: () => void;

  constructor(private readonly db: Db, bus: EventBus) {
    this.stop = bus.subscribe((e) => {
      const at = Date.now();
      if (e.type === "model.loaded") {
        db.insert(loadHistory).values({ modelId: e.model, event: "load", contextLength: e.contextLength, memoryBytes: e.memoryBytes, durationMs: e.ms, at }).run();
      } else if (e.type === "model.unloaded") {
        const event = e.reason === "evict" ? "evict" : e.reason === "ttl" ? "expire" : "unload";
        db.insert(loadHistory).values({ modelId: e.model, event, at }).run();
      } else if (e.type === "model.load_failed" || e.type === "model.failed") {
        db.insert(loadHistory).values({ modelId: e.model, event: "fail", error: e.error, at }).run();
      }
    });
  }

  recent(modelId: string, limit = 20) {
    return this.db.select().from(loadHistory).where(eq(loadHistory.modelId, modelId)).orderBy(desc(loadHistory.id)).limit(limit).all();
  }

  close(): void {
    this.stop();
  }
}

// Stored responses of the OpenAI Responses API: what `previous_response_id` continues and
// GET /v1/responses/{id} returns. Bounded three ways (count, bytes, age); the oldest go first, so a
// long-running server never grows the database without end. Items are kept as the wire JSON the
// client sent and got: the store knows nothing of their shape.
import { desc, eq, lt, sql } from "drizzle-orm";
import { log } from "../log.ts";
import type { Db } from "../store/db.ts";
import { responses } from "../store/schema.ts";

export type Item = Record<string, unknown>;

export interface StoredResponse {
  id: string;
  response: Item;
  /** The conversation's input items in order: those of the responses it continues, then its own. */
  input: Item[];
}

export interface ResponseStoreLimits {
  /** Most responses kept; 0 keeps none. */
  count: number;
  /** Most bytes of JSON kept, all responses together. */
  bytes: number;
  /** Longest a response is kept, in milliseconds. */
  ageMs: number;
}

export class ResponseStore {
  constructor(private readonly db: Db, private readonly limits: ResponseStoreLimits, private readonly now: () => number = Date.now) {}

  /** Keeps a response, then evicts past the bounds. A response larger than the whole size bound is not kept. */
  save(id: string, response: Item, input: Item[]): void {
    if (this.limits.count === 0) return;
    const responseJson = JSON.stringify(response);
    const inputJson = JSON.stringify(input);
    const bytes = Buffer.byteLength(responseJson) + Buffer.byteLength(inputJson);
    if (bytes > this.limits.bytes) {
      log.warn("response not stored: larger than the stored-responses size bound", { id, bytes, limit: this.limits.bytes });
      return;
    }
    this.db.transaction((tx) => {
      tx.insert(responses).values({ id, createdAt: this.now(), bytes, response, input }).onConflictDoUpdate({ target: responses.id, set: { bytes, response, input } }).run();
      this.evict(tx);
    });
  }

  private evict(tx: Pick<Db, "delete" | "run">): void {
    tx.delete(responses).where(lt(responses.createdAt, this.now() - this.limits.ageMs)).run();
    // Newest first: everything past the count, or past the running total of bytes, goes.
    tx.run(sql`DELETE FROM responses WHERE id IN (
      SELECT id FROM (
        SELECT id, ROW_NUMBER() OVER w AS n, SUM(bytes) OVER w AS total FROM responses
        WINDOW w AS (ORDER BY created_at DESC, rowid DESC)
      ) WHERE n > ${this.limits.count} OR total > ${this.limits.bytes}
    )`);
  }

  get(id: string): StoredResponse | undefined {
    const row = this.db.select().from(responses).where(eq(responses.id, id)).get();
    if (!row || row.createdAt < this.now() - this.limits.ageMs) return undefined;
    return { id: row.id, response: row.response, input: row.input };
  }

  /** True when there was such a response. */
  delete(id: string): boolean {
    return this.db.delete(responses).where(eq(responses.id, id)).returning({ id: responses.id }).all().length > 0;
  }

  /** Ids newest first (tests and diagnostics). */
  ids(): string[] {
    return this.db.select({ id: responses.id }).from(responses).orderBy(desc(responses.createdAt), desc(sql`rowid`)).all().map((r) => r.id);
  }
}

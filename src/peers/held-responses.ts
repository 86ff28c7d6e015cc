// Responses API answers a peer gave and stored: the peer keeps the response, this server keeps only
// which peer has it, so GET/DELETE /v1/responses/{id} and a later previous_response_id go there.
// Bounded like the local response store (count and age, oldest first), so a long-running server
// never grows the table without end.
import { eq, lt, sql } from "drizzle-orm";
import type { Db } from "../store/db.ts";
import { peerResponses } from "../store/schema.ts";

/** Response ids as the Responses API writes them; anything else a peer sends is not remembered. */
const RESPONSE_ID = /^[A-Za-z0-9_-]{1,256}$/;

export interface HeldLimits {
  /** Most ids kept; 0 keeps none. */
  count: number;
  /** Longest an id is kept, in milliseconds. */
  ageMs: number;
}

export class HeldResponses {
  constructor(private readonly db: Db, private readonly limits: HeldLimits, private readonly now: () => number = Date.now) {}

  remember(id: string, peer: string): void {
    if (this.limits.count === 0 || !RESPONSE_ID.test(id)) return;
    this.db.transaction((tx) => {
      tx.insert(peerResponses).values({ id, peer, createdAt: this.now() }).onConflictDoUpdate({ target: peerResponses.id, set: { peer } }).run();
      tx.delete(peerResponses).where(lt(peerResponses.createdAt, this.now() - this.limits.ageMs)).run();
      tx.run(sql`DELETE FROM peer_responses WHERE id IN (
        SELECT id FROM peer_responses ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ${this.limits.count}
      )`);
    });
  }

  /** The peer that stored `id`, or undefined when no peer did (or it is too old to remember). */
  holder(id: string): string | undefined {
    const row = this.db.select().from(peerResponses).where(eq(peerResponses.id, id)).get();
    return row && row.createdAt >= this.now() - this.limits.ageMs ? row.peer : undefined;
  }

  forget(id: string): void {
    this.db.delete(peerResponses).where(eq(peerResponses.id, id)).run();
  }
}

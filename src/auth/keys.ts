import { and, eq, isNull } from "drizzle-orm";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { LmxError, NotFoundError } from "../errors.ts";
import type { Db } from "../store/db.ts";
import { apiKeys } from "../store/schema.ts";

class ConflictError extends LmxError {
  constructor(message: string, code: string) {
    super(message, 409, "invalid_request_error", code);
  }
}

export type KeyScope = "admin" | "inference";

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

export interface KeyInfo {
  id: string;
  name: string | null;
  scope: KeyScope;
  prefix: string;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

const toInfo = (r: typeof apiKeys.$inferSelect): KeyInfo => ({
  id: r.id, name: r.name, scope: r.scope, prefix: r.prefix, createdAt: r.createdAt, lastUsedAt: r.lastUsedAt, revokedAt: r.revokedAt,
});

/** Prepared once: building the query took most of `hasKeys`' time before its answer was kept. */
const activeKeyQuery = (db: Db) => db.select({ id: apiKeys.id }).from(apiKeys).where(isNull(apiKeys.revokedAt)).limit(1).prepare();

/**
 * API keys: keys from flags/env (admin scope, never stored) and keys created through the API
 * (stored as SHA-256 only; the key is shown once at creation).
 */
export class KeyStore {
  private readonly staticDigests: Buffer[];
  private lastUsedWrites = new Map<string, number>();
  private readonly activeKey: ReturnType<typeof activeKeyQuery>;
  private readonly dataVersion: () => number;
  /** hasKeys' last answer, and the database's data_version it was read at. */
  private known: { keys: boolean; version: number } | undefined;

  constructor(private readonly db: Db, staticKeys: string[]) {
    this.staticDigests = staticKeys.map((k) => Buffer.from(sha256(k), "hex"));
    this.activeKey = activeKeyQuery(db);
    const version = db.$client.prepare<{ data_version: number }, []>("PRAGMA data_version");
    this.dataVersion = () => version.get()?.data_version ?? Number.NaN;
  }

  /**
   * Whether a key exists, so authentication is on exactly when one does. Runs on every request:
   * the answer is kept until a key is created or revoked here, or another process (a second server
   * on the same home) commits to the database, which SQLite's data_version tells. The query
   * itself, the first database work after the server was idle, took ≈0.1 ms of every request.
   */
  hasKeys(): boolean {
    if (this.staticDigests.length > 0) return true;
    const version = this.dataVersion();
    if (this.known?.version !== version) this.known = { keys: this.activeKey.all().length > 0, version };
    return this.known.keys;
  }

  /**
   * The first key turns authentication on. If it is an inference key, an admin key is created with
   * it (and shown once, like every key): otherwise no key could reach /admin and the owner would be
   * locked out of managing the server.
   */
  create(scope: KeyScope, name?: string): { key: string; info: KeyInfo; admin?: { key: string; info: KeyInfo } } {
    if (scope === "inference" && !this.hasKeys()) {
      return this.db.transaction(() => ({ admin: this.insert("admin", "admin (created with the first key)"), ...this.insert(scope, name) }));
    }
    return this.insert(scope, name);
  }

  private insert(scope: KeyScope, name?: string): { key: string; info: KeyInfo } {
    const key = "lmx-" + randomBytes(24).toString("base64url");
    const row = { id: "key_" + randomBytes(6).toString("hex"), name: name ?? null, scope, hash: sha256(key), prefix: key.slice(0, 10), createdAt: Date.now() };
    this.db.insert(apiKeys).values(row).run();
    this.known = undefined;
    return { key, info: toInfo({ ...row, lastUsedAt: null, revokedAt: null }) };
  }

  list(): KeyInfo[] {
    return this.db.select().from(apiKeys).all().map(toInfo);
  }

  /** Revokes by id, name or prefix (exactly one match). */
  revoke(ref: string): KeyInfo {
    const matches = this.list().filter((k) => !k.revokedAt && (k.id === ref || k.name === ref || k.prefix === ref));
    if (matches.length !== 1) throw new NotFoundError(matches.length ? `'${ref}' matches ${matches.length} keys; use the id` : `no active key '${ref}'`);
    const active = this.list().filter((k) => !k.revokedAt);
    if (matches[0]!.scope === "admin" && this.staticDigests.length === 0 && active.length > 1 && active.filter((k) => k.scope === "admin").length === 1) {
      throw new ConflictError(`'${ref}' is the last admin key while inference keys remain: revoking it would lock every /admin route. Create another admin key first, or revoke the inference keys.`, "last_admin_key");
    }
    const now = Date.now();
    this.db.update(apiKeys).set({ revokedAt: now }).where(eq(apiKeys.id, matches[0]!.id)).run();
    this.known = undefined;
    return { ...matches[0]!, revokedAt: now };
  }

  /** The scope of a presented key, or undefined. */
  verify(presented: string): KeyScope | undefined {
    const digest = Buffer.from(sha256(presented), "hex");
    if (this.staticDigests.some((d) => timingSafeEqual(d, digest))) return "admin";
    // The lookup is by the digest, which reveals nothing about the key through timing.
    const row = this.db.select().from(apiKeys).where(and(eq(apiKeys.hash, digest.toString("hex")), isNull(apiKeys.revokedAt))).get();
    if (!row) return undefined;
    const now = Date.now();
    // last_used_at is informational: write it at most once a minute per key.
    if (now - (this.lastUsedWrites.get(row.id) ?? 0) > 60_000) {
      this.lastUsedWrites.set(row.id, now);
      this.db.update(apiKeys).set({ lastUsedAt: now }).where(eq(apiKeys.id, row.id)).run();
    }
    return row.scope;
  }
}

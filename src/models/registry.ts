import { eq } from "drizzle-orm";
import { existsSync } from "node:fs";
import * as v from "valibot";
import { LoadSettings } from "../config/load-settings.ts";
import type { ModelDescriptor } from "../engines/types.ts";
import { log } from "../log.ts";
import type { Db } from "../store/db.ts";
import { models } from "../store/schema.ts";

export type RegisteredModel = typeof models.$inferSelect;
export type NewModel = Omit<typeof models.$inferInsert, "createdAt" | "updatedAt">;

/** Models LMX knows about beyond the models directory: downloaded from the hub or imported. */
export class ModelRegistry {
  constructor(private readonly db: Db) {}

  all(): RegisteredModel[] {
    return this.db.select().from(models).all();
  }

  get(id: string): RegisteredModel | undefined {
    return this.db.select().from(models).where(eq(models.id, id)).get() ?? this.all().find((m) => m.aliases.includes(id));
  }

  /** Insert or replace; a row exists only once every file it names is complete on disk. */
  upsert(model: NewModel): RegisteredModel {
    const now = Date.now();
    const row = { ...model, createdAt: now, updatedAt: now };
    this.db.insert(models).values(row).onConflictDoUpdate({ target: models.id, set: { ...model, updatedAt: now } }).run();
    return this.get(model.id)!;
  }

  setLoadDefaults(id: string, defaults: LoadSettings): void {
    this.db.update(models).set({ loadDefaults: defaults, updatedAt: Date.now() }).where(eq(models.id, id)).run();
  }

  setAliases(id: string, aliases: string[]): void {
    this.db.update(models).set({ aliases, updatedAt: Date.now() }).where(eq(models.id, id)).run();
  }

  remove(id: string): void {
    this.db.delete(models).where(eq(models.id, id)).run();
  }

  /** Descriptors for the catalog: entries whose files are still there. */
  descriptors(): ModelDescriptor[] {
    return this.all().filter((m) => existsSync(m.path)).map((m) => ({ id: m.id, format: m.format, path: m.path }));
  }

  aliases(): Map<string, string> {
    const out = new Map<string, string>();
    for (const m of this.all()) for (const a of m.aliases) out.set(a, m.id);
    return out;
  }

  /** The model's saved load settings; a stored value outside today's bounds is ignored, not loaded with. */
  savedDefaults(id: string): LoadSettings | undefined {
    const d = this.get(id)?.loadDefaults;
    if (!d) return undefined;
    const parsed = v.safeParse(LoadSettings, d);
    if (parsed.success) return parsed.output;
    log.warn("ignoring invalid saved load settings", { model: id, error: parsed.issues[0].message });
    return undefined;
  }
}

// Routes: a model name a client asks for, mapped to a model this server has. Clients that insist
// on their own names (Claude Code asks for claude-… models) reach a local model through them on
// every API. A route's NAME may hold `*` wildcards; its MODEL is a model id or alias.
//
// Routes come from the configuration (--route, LMX_ROUTES, config.json "routes"), kept in memory
// as given, and from the admin API, kept in SQLite so they outlive a restart. An admin route
// takes precedence over a configured one of the same name; deleting it uncovers the configured one.
import { asc, eq } from "drizzle-orm";
import { InvalidRequestError, LmxError, NotFoundError } from "../errors.ts";
import type { Db } from "../store/db.ts";
import { routes } from "../store/schema.ts";

export type RouteSource = "config" | "admin";

export interface Route {
  name: string;
  model: string;
  source: RouteSource;
}

/** Most routes kept; each is matched against a requested name in turn. */
export const MAX_ROUTES = 1024;

const NAME = /^[\w.:/@*-]{1,200}$/;
const MODEL = /^[\w.:/@-]{1,200}$/;

/** Most targets in one route's fallback chain (`MODEL,MODEL,…`). */
export const MAX_CHAIN = 8;

/** What is wrong with a route, or undefined. */
export function routeProblem(name: string, model: string): string | undefined {
  if (!NAME.test(name)) return `route name '${name}' must be 1-200 letters, digits, '*' wildcards and . _ : / @ -`;
  const targets = model.split(",");
  if (targets.length > MAX_CHAIN) return `a route lists at most ${MAX_CHAIN} targets`;
  const bad = targets.find((t) => !MODEL.test(t));
  if (bad !== undefined) return `route target '${bad}' must be a model id or alias, or PEER/model (1-200 letters, digits and . _ : / @ -)`;
  return undefined;
}

/** The targets of a route's model, in the order they are tried. */
export const chainOf = (model: string): string[] => model.split(",");

interface Compiled extends Route {
  pattern?: RegExp;
}

function compile(route: Route): Compiled {
  if (!route.name.includes("*")) return route;
  const body = route.name.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join(".*");
  return { ...route, pattern: new RegExp(`^${body}$`, "s") };
}

/**
 * Wildcard routes, most specific first: the longest pattern wins, then the one with fewer
 * wildcards, then the name's order, so the choice never depends on insertion order.
 */
function bySpecificity(a: Compiled, b: Compiled): number {
  const stars = (s: string) => s.split("*").length - 1;
  return b.name.length - a.name.length || stars(a.name) - stars(b.name) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

export class RouteTable {
  private exact = new Map<string, Compiled>();
  private wildcards: Compiled[] = [];

  constructor(private readonly configured: Record<string, string>, private readonly db: Db) {
    for (const [name, model] of Object.entries(configured)) {
      const problem = routeProblem(name, model);
      if (problem) throw new InvalidRequestError(problem, "routes");
    }
    this.rebuild();
  }

  private stored(): Route[] {
    return this.db.select().from(routes).orderBy(asc(routes.name)).all().map((r) => ({ name: r.name, model: r.model, source: "admin" as const }));
  }

  private rebuild(): void {
    const all = new Map<string, Route>();
    for (const [name, model] of Object.entries(this.configured)) all.set(name, { name, model, source: "config" });
    for (const r of this.stored()) all.set(r.name, r);
    const compiled = [...all.values()].map(compile);
    this.exact = new Map(compiled.filter((r) => !r.pattern).map((r) => [r.name, r]));
    this.wildcards = compiled.filter((r) => r.pattern).sort(bySpecificity);
  }

  /** Every route in force, exact names first, wildcards in the order they are tried. */
  list(): Route[] {
    const plain = ({ name, model, source }: Compiled): Route => ({ name, model, source });
    return [...[...this.exact.values()].sort((a, b) => (a.name < b.name ? -1 : 1)), ...this.wildcards].map(plain);
  }

  /** The model `name` is routed to: an exact route wins over wildcards; undefined when none matches. */
  resolve(name: string): string | undefined {
    const exact = this.exact.get(name);
    if (exact) return exact.model;
    return this.wildcards.find((r) => r.pattern!.test(name))?.model;
  }

  /** Adds or replaces an admin route. */
  set(name: string, model: string): Route {
    const problem = routeProblem(name, model);
    if (problem) throw new InvalidRequestError(problem, "name");
    const known = this.exact.has(name) || this.wildcards.some((r) => r.name === name);
    if (!known && this.list().length >= MAX_ROUTES) throw new InvalidRequestError(`at most ${MAX_ROUTES} routes`, "name", "too_many_routes");
    this.db.insert(routes).values({ name, model, updatedAt: Date.now() })
      .onConflictDoUpdate({ target: routes.name, set: { model, updatedAt: Date.now() } }).run();
    this.rebuild();
    return { name, model, source: "admin" };
  }

  /** Removes an admin route; a configured one of the same name is in force again afterwards. */
  remove(name: string): void {
    const stored = this.db.select().from(routes).where(eq(routes.name, name)).get();
    if (!stored) {
      if (Object.hasOwn(this.configured, name)) {
        throw new LmxError(`route '${name}' comes from the server's configuration (--route, LMX_ROUTES or config.json "routes"); change it there`, 409, "invalid_request_error", "route_configured");
      }
      throw new NotFoundError(`no route named '${name}'`);
    }
    this.db.delete(routes).where(eq(routes.name, name)).run();
    this.rebuild();
  }
}

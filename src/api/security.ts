import { hostname } from "node:os";
import type { KeyScope } from "../auth/keys.ts";
import { AuthenticationError, ForbiddenError } from "../errors.ts";

export interface KeyVerifier {
  hasKeys(): boolean;
  verify(presented: string): KeyScope | undefined;
}

export interface SecurityOptions {
  boundHost: string;
  keys: KeyVerifier;
  corsOrigins: string[];
  allowedHosts: string[];
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\./.test(host) || host.endsWith(".localhost");
}

/** Host header without its port; IPv6 literals keep their brackets. */
function hostOnly(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const colon = h.lastIndexOf(":");
  return colon === -1 ? h : h.slice(0, colon);
}

export class Security {
  private readonly names: Set<string>;

  constructor(private readonly opts: SecurityOptions) {
    const own = hostname().toLowerCase();
    this.names = new Set([...LOOPBACK, opts.boundHost.toLowerCase(), ...opts.allowedHosts.map((h) => h.toLowerCase())]);
    // When bound to all interfaces the machine's own names are legitimate; a rebinding attacker's domain is not.
    if (opts.boundHost === "0.0.0.0" || opts.boundHost === "::") {
      this.names.add(own);
      this.names.add(own + ".local");
    }
  }

  /** Keys are required as soon as any exists (flag, env or created through the API). */
  get authRequired(): boolean {
    return this.opts.keys.hasKeys();
  }

  /**
   * DNS-rebinding defence: a page on evil.example that resolves to 127.0.0.1 sends Host: evil.example.
   * IP literals cannot be rebound, so they are accepted; names must be ours.
   */
  checkHost(header: string | null): void {
    if (!header) throw new ForbiddenError("missing Host header", "invalid_host");
    const host = hostOnly(header);
    if (this.names.has(host) || IPV4.test(host) || host.startsWith("[") || host.endsWith(".localhost")) return;
    throw new ForbiddenError(`Host '${host}' is not allowed. Add it with --allowed-host if this server is meant to be reached by that name.`, "invalid_host");
  }

  /** Admin routes need an admin-scoped key; inference keys reach everything else. */
  checkAuth(authorization: string | null, xApiKey: string | null, needs: KeyScope): void {
    if (!this.authRequired) return;
    const presented = authorization?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim() ?? xApiKey?.trim();
    if (!presented) throw new AuthenticationError();
    const scope = this.opts.keys.verify(presented);
    if (!scope) throw new AuthenticationError("Invalid API key.");
    if (needs === "admin" && scope !== "admin") throw new ForbiddenError("this key has inference scope; /admin routes need an admin key", "insufficient_scope");
  }

  /** CORS headers for an allowed origin, or undefined (CORS is off unless origins are configured). */
  corsHeaders(origin: string | null, requestedHeaders?: string | null): Record<string, string> | undefined {
    if (!origin || this.opts.corsOrigins.length === 0) return undefined;
    const any = this.opts.corsOrigins.includes("*");
    if (!any && !this.opts.corsOrigins.includes(origin)) return undefined;
    return {
      "access-control-allow-origin": any ? "*" : origin,
      "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
      "access-control-allow-headers": requestedHeaders || "authorization, content-type, x-api-key",
      "access-control-max-age": "600",
      vary: "Origin",
    };
  }
}

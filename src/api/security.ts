import { hostname } from "node:os";
import type { KeyScope } from "../auth/keys.ts";
import { AuthenticationError, ForbiddenError, InvalidRequestError, LmxError } from "../errors.ts";

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
    if (!header?.trim()) throw new InvalidRequestError("the request has no Host header (HTTP/1.1 requires one)", null, "missing_host");
    const host = hostOnly(header);
    if (this.names.has(host) || IPV4.test(host) || host.startsWith("[") || host.endsWith(".localhost")) return;
    throw new ForbiddenError(`Host '${host}' is not allowed. Add it with --allowed-host if this server is meant to be reached by that name.`, "invalid_host");
  }

  /** How this server is exposed, for the admin API (the dashboard's settings view warns on it). */
  exposure(): { bound_host: string; loopback_only: boolean; cors_origins: string[]; allowed_hosts: string[]; auth_required: boolean } {
    return {
      bound_host: this.opts.boundHost,
      loopback_only: isLoopback(this.opts.boundHost),
      cors_origins: [...this.opts.corsOrigins],
      allowed_hosts: [...this.opts.allowedHosts],
      auth_required: this.authRequired,
    };
  }

  /** Admin routes need an admin-scoped key; inference keys reach everything else. */
  checkAuth(authorization: string | null, xApiKey: string | null, needs: KeyScope): void {
    if (!this.authRequired) return;
    const presented = authorization?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim() ?? xApiKey?.trim();
    if (!presented) throw new AuthenticationError();
    const scope = this.opts.keys.verify(presented);
    if (!scope) throw new AuthenticationError("Invalid API key.");
    if (needs === "admin" && scope !== "admin") throw new ForbiddenError("this key has inference scope; /admin routes, /metrics and Ollama's /api/pull, /api/delete and /api/copy need an admin key", "insufficient_scope");
  }

  /**
   * CSRF defence. A web page the user visits can make the browser send requests here; browsers mark
   * them with Origin (every non-GET, and CORS reads) or at least Sec-Fetch-Site. Such a request is
   * refused before it acts unless its origin is allow-listed (--cors-origin) or is this server's own
   * (the /docs page). A top-level navigation (a link the user follows) only shows a page to the user,
   * so it passes. CLI and SDK clients send neither header.
   */
  checkOrigin(request: Request): void {
    const origin = request.headers.get("origin");
    if (origin !== null) {
      if (this.originAllowed(origin) || this.isOwnOrigin(origin, request.headers.get("host"))) return;
      throw new ForbiddenError(`requests from the web page at '${origin}' are refused (cross-site request forgery defence). Allow that origin with --cors-origin if it is yours.`, "origin_forbidden");
    }
    const site = request.headers.get("sec-fetch-site");
    if (site !== "cross-site" && site !== "same-site") return;
    const navigation = request.headers.get("sec-fetch-mode") === "navigate" && (request.method === "GET" || request.method === "HEAD");
    if (!navigation) throw new ForbiddenError("cross-site requests without an allowed Origin are refused (cross-site request forgery defence)", "origin_forbidden");
  }

  /**
   * A browser form or `fetch(..., {mode: "no-cors"})` can only send form-encoded, multipart or
   * text/plain bodies without a CORS preflight; requiring JSON on every state-changing route leaves a
   * page nothing it can send. A body-less request (an unload, a revoke) needs no type.
   */
  checkBodyType(request: Request): void {
    if (request.method === "GET" || request.method === "HEAD" || request.method === "OPTIONS") return;
    const type = request.headers.get("content-type");
    const length = request.headers.get("content-length");
    const hasBody = request.headers.has("transfer-encoding") || (length !== null && length.trim() !== "0");
    if (type === null && !hasBody) return;
    if (type !== null && /^application\/json\s*(;|$)/i.test(type.trim())) return;
    throw new LmxError(`request bodies must be JSON: send 'Content-Type: application/json'${type ? ` (got '${type}')` : ""}`, 415, "invalid_request_error", "unsupported_media_type");
  }

  private originAllowed(origin: string): boolean {
    return this.opts.corsOrigins.includes("*") || this.opts.corsOrigins.includes(origin);
  }

  /** The page was served by this server under the name the request uses (Host passed checkHost). */
  private isOwnOrigin(origin: string, host: string | null): boolean {
    if (!host) return false;
    try {
      const u = new URL(origin);
      return u.protocol === "http:" && u.host === new URL(`http://${host}`).host;
    } catch {
      return false;
    }
  }

  /** CORS headers for an allowed origin, or undefined (CORS is off unless origins are configured). */
  corsHeaders(origin: string | null, requestedHeaders?: string | null): Record<string, string> | undefined {
    if (!origin || !this.originAllowed(origin)) return undefined;
    const any = this.opts.corsOrigins.includes("*");
    return {
      "access-control-allow-origin": any ? "*" : origin,
      "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
      "access-control-allow-headers": requestedHeaders || "authorization, content-type, x-api-key",
      "access-control-max-age": "600",
      vary: "Origin",
    };
  }
}

/**
 * What holds the port we failed to bind: another LMX answers /health with its version; anything
 * else is named only as "another program" (which process owns a socket is not portably knowable).
 */
export async function portTakenMessage(host: string, port: number, flag = "--port"): Promise<string> {
  const shown = host.includes(":") ? `[${host}]` : host;
  const probeHost = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "[::1]" : shown;
  const where = `${shown}:${port}`;
  try {
    const res = await fetch(`http://${probeHost}:${port}/health`, { signal: AbortSignal.timeout(1000) });
    const body = (await res.json()) as { status?: unknown; version?: unknown };
    if (body.status === "ok" && typeof body.version === "string") {
      return `port ${port} is taken: another lmx (version ${body.version}) is already listening on ${where}. Stop it, or pick another port with ${flag}.`;
    }
  } catch {
    // Not an HTTP server we recognise.
  }
  return `port ${port} is taken: another program is already listening on ${where}. Stop it, or pick another port with ${flag}.`;
}

// Addresses for mlx.distributed's ring backend, which connects ranks by IPv4 address and port.
import { lookup } from "node:dns/promises";
import { createConnection, createServer, isIPv4 } from "node:net";
import { InvalidRequestError } from "../errors.ts";

/** A TCP port nothing listens on now; the rank's worker binds it moments later. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "0.0.0.0", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** The IPv4 address a host name stands for. */
export async function ipv4Of(host: string): Promise<string> {
  const bare = host.replace(/^\[|\]$/g, "");
  if (isIPv4(bare)) return bare;
  try {
    return (await lookup(bare, { family: 4 })).address;
  } catch {
    throw new InvalidRequestError(`'${host}' has no IPv4 address; mlx.distributed's ring backend connects nodes over IPv4`, "nodes");
  }
}

/** This machine's address on the route to host:port: the one that node can reach us by. */
export function localAddressToward(host: string, port: number, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host, port, family: 4, timeout: timeoutMs });
    socket.once("connect", () => {
      const address = socket.localAddress;
      socket.destroy();
      if (address && isIPv4(address.replace(/^::ffff:/, ""))) resolve(address.replace(/^::ffff:/, ""));
      else reject(new Error(`no IPv4 address toward ${host}`));
    });
    socket.once("timeout", () => {
      socket.destroy();
      reject(new Error(`${host}:${port} did not accept a connection within ${timeoutMs} ms`));
    });
    socket.once("error", reject);
  });
}

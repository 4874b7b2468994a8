/**
 * Ports for the demo's listeners that no outgoing connection takes meanwhile.
 *
 * A port picked free and handed to a process that binds it later (a replica starting, a Service address
 * closed while its function is at zero) may be taken in between as the local port of some outgoing
 * connection, when it lies in the kernel's ephemeral range: with a dozen processes each pooling
 * connections to Postgres that happened, and the replica died with EADDRINUSE. Ports below that range
 * are never handed out for outgoing connections, so they stay free until a listener takes them.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { freePort } from '../../common/loopback.js';

/** Linux's default; macOS starts at 49152, so ports below 32768 are outside both. */
const DEFAULT_EPHEMERAL: readonly [number, number] = [32768, 60999];
const LOWEST = 10_000;

/** The range to pick listening ports from, below the ephemeral one; none when it leaves too little room. Pure. */
export function listenPortRange(ephemeral: readonly [number, number]): [number, number] | undefined {
  const highest = Math.min(ephemeral[0], DEFAULT_EPHEMERAL[0]) - 1;
  return highest - LOWEST >= 1000 ? [LOWEST, highest] : undefined;
}

function ephemeralRange(): readonly [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return low !== undefined && high !== undefined && low > 0 && high >= low ? [low, high] : DEFAULT_EPHEMERAL;
  } catch {
    return DEFAULT_EPHEMERAL; // not Linux
  }
}

/** Whether nothing listens on `port` on any address (replicas bind 0.0.0.0). */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
  });
}

/** A free port below the ephemeral range; a free ephemeral one when there is no room below it. */
export async function freeListenPort(random: () => number = Math.random): Promise<number> {
  const range = listenPortRange(ephemeralRange());
  if (range) {
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = range[0] + Math.floor(random() * (range[1] - range[0] + 1));
      if (await isFree(port)) return port;
    }
  }
  return freePort();
}

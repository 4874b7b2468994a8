import { createServer, type Server } from 'node:net';

/** Starts a server listening on a free loopback port; resolves with the port. */
export async function listenOnLoopback(server: Pick<Server, 'listen' | 'once' | 'off' | 'address'>): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });
}

/** Picks a free TCP port on loopback (for a program that binds it itself). */
export async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listenOnLoopback(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

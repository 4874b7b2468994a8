import type { Server } from 'node:http';
import express, { type Express } from 'express';
import type { Registry } from 'prom-client';

/** What the health endpoints ask of the program. */
export interface HealthChecks {
  /** Alive: the process is not wedged. */
  live(): boolean;
  /** Ready: doing its job (connected, leader or standby, informers synced...). Returns a reason when not. */
  ready(): { ok: boolean; reason?: string };
}

/**
 * The /metrics, /healthz and /readyz endpoints both programs serve; `documents` adds JSON endpoints
 * (the dispatcher's /state), each answering what its function returns at the time of the request.
 */
export function createOpsApp(registry: Registry, health: HealthChecks, documents: Record<string, () => unknown> = {}): Express {
  const app = express();
  app.disable('x-powered-by');
  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', registry.contentType);
    res.send(await registry.metrics());
  });
  app.get('/healthz', (_req, res) => {
    res.status(health.live() ? 200 : 503).send(health.live() ? 'ok' : 'unhealthy');
  });
  app.get('/readyz', (_req, res) => {
    const state = health.ready();
    res.status(state.ok ? 200 : 503).send(state.ok ? 'ok' : `not ready: ${state.reason ?? 'unknown'}`);
  });
  for (const [path, document] of Object.entries(documents)) {
    app.get(path, (_req, res) => {
      res.set('Cache-Control', 'no-store');
      res.json(document());
    });
  }
  return app;
}

/** Starts an Express app on host:port and resolves once it listens. */
export function listen(app: Express, port: number, host = '0.0.0.0'): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (error?: Error) => (error ? reject(error) : resolve(server)));
    server.once('error', reject);
  });
}

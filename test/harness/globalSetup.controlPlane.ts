/**
 * vitest globalSetup: builds the Kubernetes control-plane binaries once, before any worker starts
 * (test/controlplane/build.sh; instant when cached, many minutes on a cold machine — hooks in test
 * files could not wait that long). Wire it in vitest.config.ts:
 *   test: { globalSetup: ['test/harness/globalSetup.controlPlane.ts'] }
 * Set EVENTIDE_SKIP_K8S_BUILD=1 to skip (tests that need the binaries then fail with a clear error).
 */
import { ensureControlPlaneBinaries } from './controlPlane.js';

export default async function setup(): Promise<void> {
  if (process.env.EVENTIDE_SKIP_K8S_BUILD === '1') return;
  const started = Date.now();
  const binDir = await ensureControlPlaneBinaries();
  const seconds = (Date.now() - started) / 1000;
  if (seconds > 5) console.error(`[globalSetup] Kubernetes control-plane binaries built in ${seconds.toFixed(0)}s: ${binDir}`);
}

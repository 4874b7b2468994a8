/**
 * Shared set-up for the operator's integration tests: a real control plane, eventide's CRDs, and
 * helpers to read and wait on the world through kubectl.
 */

import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { createLogger } from '../../common/logger.js';
import { type ControlPlane, type ControlPlaneOptions, startControlPlane } from '../harness/controlPlane.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CRDS_DIR = join(REPO_ROOT, 'crds');

/** Installs eventide's CRDs the way users do (`kubectl apply -f crds/`) and waits until they are served. */
export async function installCrds(cp: ControlPlane): Promise<void> {
  const applied = await cp.kubectl(['apply', '--server-side', '-f', CRDS_DIR]);
  if (applied.code !== 0) throw new Error(`installing CRDs failed: ${applied.stderr}`);
  const established = await cp.kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/functions.eventide.dev', 'crd/eventtriggers.eventide.dev', 'crd/backfills.eventide.dev']);
  if (established.code !== 0) throw new Error(`CRDs not established: ${established.stderr}`);
}

/** Starts a control plane with eventide's CRDs installed. */
export async function startClusterWithCrds(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const cp = await startControlPlane(options);
  try {
    await installCrds(cp);
  } catch (error) {
    await cp.stop();
    throw error;
  }
  return cp;
}

export function kubeConfigFrom(path: string): KubeConfig {
  const config = new KubeConfig();
  config.loadFromFile(path);
  return config;
}

/** Runs kubectl and fails the test with its stderr if it fails. */
export async function kubectlOk(cp: ControlPlane, args: string[], input?: string): Promise<string> {
  const result = await cp.kubectl(args, input);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

/** Reads an object as JSON, or undefined when it does not exist. */
export async function getJson<T = Record<string, unknown>>(cp: ControlPlane, args: string[]): Promise<T | undefined> {
  const result = await cp.kubectl(['get', ...args, '-o', 'json']);
  if (result.code !== 0) {
    if (/NotFound|not found/.test(result.stderr)) return undefined;
    throw new Error(`kubectl get ${args.join(' ')} failed: ${result.stderr}`);
  }
  return JSON.parse(result.stdout) as T;
}

/** Polls `check` until it returns a value other than undefined/false, or fails with the last value seen. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A condition of a stored resource's status. */
export interface StoredCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export function conditionOf(obj: { status?: { conditions?: StoredCondition[] } } | undefined, type: string): StoredCondition | undefined {
  return obj?.status?.conditions?.find((c) => c.type === type);
}

/** Operator logs in tests: silent unless EVENTIDE_TEST_LOG_LEVEL is set (debug, info...). */
export function testLogger(name = 'eventide-operator') {
  return createLogger(name, { level: process.env.EVENTIDE_TEST_LOG_LEVEL ?? 'silent' });
}

/** Waits for a namespace to exist (creating it), for tests that isolate themselves by namespace. */
export async function createNamespace(cp: ControlPlane, name: string): Promise<void> {
  const result = await cp.kubectl(['create', 'namespace', name]);
  if (result.code !== 0 && !/AlreadyExists/.test(result.stderr)) throw new Error(`create namespace ${name}: ${result.stderr}`);
}

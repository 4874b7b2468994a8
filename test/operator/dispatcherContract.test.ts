/**
 * The contract between the operator and the dispatcher it deploys: the dispatcher Deployment's args
 * point at a directory where kubelet mounts the ConfigMap, and the dispatcher must load from it exactly
 * the triggers the operator wrote, with the slot and publication the operator chose.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type EventTriggerResource, loadManifests, parseEventTrigger } from '../../api/v1alpha1/index.js';
import { sourceNames } from '../../dispatcher/servedConfig.js';
import { DISPATCHER_CONFIG_DIR, makeDispatcherConfigMap, makeDispatcherDeployment } from '../../operator/eventtrigger/dispatcher.js';
import { chooseSlot, type SourceRef } from '../../operator/eventtrigger/source.js';
import { writeConfigMapVolume } from '../harness/dispatcherKubelet.js';

const source: SourceRef = { namespace: 'food', secretName: 'orders-db', key: 'url' };

function trigger(name: string, spec: Record<string, unknown> = {}): EventTriggerResource {
  const parsed = parseEventTrigger({
    apiVersion: 'eventide.dev/v1alpha1',
    kind: 'EventTrigger',
    metadata: { name, namespace: 'food' },
    spec: { source: { connectionSecretRef: { name: 'orders-db' } }, table: { name: 'orders' }, function: { name: 'validate-order' }, ...spec },
  });
  parsed.metadata.uid = `uid-${name}`;
  return parsed;
}

/** A temp dir with ConfigMap data written the way kubelet's atomic writer does. */
function mountLikeKubelet(data: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'eventide-cm-'));
  writeConfigMapVolume(root, data);
  return root;
}

const mounted: string[] = [];
afterEach(() => {
  for (const dir of mounted.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('operator → dispatcher config', () => {
  const members = [trigger('new-order'), trigger('paid-order', { operations: ['update'], columns: ['is_paid'] })];

  it('the dispatcher reads its config from the directory the ConfigMap is mounted at', () => {
    const deployment = makeDispatcherDeployment(source, members, { image: 'img' });
    const container = deployment.spec!.template.spec!.containers[0]!;
    expect(container.args?.slice(0, 3)).toEqual(['dispatch', '-f', DISPATCHER_CONFIG_DIR]);
    expect(container.volumeMounts).toContainEqual(expect.objectContaining({ name: 'triggers', mountPath: DISPATCHER_CONFIG_DIR }));
  });

  it("loading the mounted ConfigMap yields each trigger exactly once (kubelet's ..data links are not extra files)", () => {
    const dir = mountLikeKubelet(makeDispatcherConfigMap(source, members).data!);
    mounted.push(dir);
    const loaded = loadManifests([dir]);
    expect(loaded.triggers.map((t) => t.metadata.name)).toEqual(['new-order', 'paid-order']);
  });

  it('the dispatcher picks the slot and publication the operator chose (and would drop on delete)', () => {
    const named = [trigger('a'), trigger('b', { source: { connectionSecretRef: { name: 'orders-db' }, slotName: 'orders_slot' } })];
    const dir = mountLikeKubelet(makeDispatcherConfigMap(source, named).data!);
    mounted.push(dir);
    const choice = chooseSlot(source, named);
    const triggers = [...new Map(loadManifests([dir]).triggers.map((t) => [t.metadata.name, t])).values()];
    expect(sourceNames(triggers, {})).toEqual({ slot: choice.slotName, publication: choice.publicationName });
    expect(choice.slotName).toBe('orders_slot');
  });
});

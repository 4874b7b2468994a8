import type { V1Deployment } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { ConditionT } from '../../api/v1alpha1/index.js';
import { ConditionSet, type ConditionState, conditionTime } from '../../operator/conditions.js';
import { deploymentReadiness } from '../../operator/deploymentReadiness.js';
import { FunctionLifecycle } from '../../operator/function/lifecycle.js';

const T0 = '2026-01-01T00:00:00Z';
const T1 = '2026-01-01T00:05:00Z';
const set = new ConditionSet<'A' | 'B'>('Ready', ['A', 'B']);

const cond = (type: string, status: ConditionT['status'], reason: string, message = '', lastTransitionTime = T0): ConditionT => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime,
  observedGeneration: 1,
});

interface RollupCase {
  name: string;
  given: { previous?: ConditionT[]; marks: [type: 'A' | 'B', state: ConditionState][]; happyFalse?: [string, string] };
  expect: { ready: Partial<ConditionT>; conditions?: Partial<ConditionT>[] };
}

const rollups: RollupCase[] = [
  {
    name: 'Ready is True with reason Ready when every dependent is True',
    given: {
      marks: [
        ['A', { status: 'True', reason: 'AOk', message: '' }],
        ['B', { status: 'True', reason: 'BOk', message: '' }],
      ],
    },
    expect: { ready: { status: 'True', reason: 'Ready', message: '' } },
  },
  {
    name: 'Ready is False with the reason and message of the first False dependent',
    given: {
      marks: [
        ['A', { status: 'Unknown', reason: 'Waiting', message: 'a is waiting' }],
        ['B', { status: 'False', reason: 'Broken', message: 'b is broken' }],
      ],
    },
    expect: { ready: { status: 'False', reason: 'Broken', message: 'b is broken' } },
  },
  {
    name: 'Ready is Unknown with the first Unknown dependent when none is False',
    given: {
      marks: [
        ['A', { status: 'True', reason: 'AOk', message: '' }],
        ['B', { status: 'Unknown', reason: 'Waiting', message: 'b waits' }],
      ],
    },
    expect: { ready: { status: 'Unknown', reason: 'Waiting', message: 'b waits' } },
  },
  {
    name: 'a dependent never marked starts Unknown, so Ready is not True',
    given: { marks: [['A', { status: 'True', reason: 'AOk', message: '' }]] },
    expect: { ready: { status: 'Unknown', reason: 'Initializing' }, conditions: [{}, {}, { type: 'B', status: 'Unknown', reason: 'Initializing' }] },
  },
  {
    name: 'a dependent not marked this round keeps its previous state',
    given: { previous: [cond('B', 'False', 'Old', 'old problem')], marks: [['A', { status: 'True', reason: 'AOk', message: '' }]] },
    expect: { ready: { status: 'False', reason: 'Old', message: 'old problem' } },
  },
  {
    name: 'marking the happy condition False overrides the roll-up (an invalid spec)',
    given: {
      marks: [
        ['A', { status: 'True', reason: 'AOk', message: '' }],
        ['B', { status: 'True', reason: 'BOk', message: '' }],
      ],
      happyFalse: ['InvalidSpec', 'spec.filter: bad'],
    },
    expect: { ready: { status: 'False', reason: 'InvalidSpec', message: 'spec.filter: bad' } },
  },
  {
    name: 'conditions are ordered Ready first, then the dependents in set order, each with observedGeneration',
    given: {
      marks: [
        ['B', { status: 'True', reason: 'BOk', message: '' }],
        ['A', { status: 'True', reason: 'AOk', message: '' }],
      ],
    },
    expect: {
      ready: { status: 'True' },
      conditions: [
        { type: 'Ready', observedGeneration: 2 },
        { type: 'A', observedGeneration: 2 },
        { type: 'B', observedGeneration: 2 },
      ],
    },
  },
];

describe('ConditionSet roll-up', () => {
  it.each(rollups)('$name', ({ given, expect: want }) => {
    const manager = set.manage(given.previous, { generation: 2, now: T1 });
    for (const [type, state] of given.marks) manager.mark(type, state);
    if (given.happyFalse) manager.markHappyFalse(...given.happyFalse);
    const conditions = manager.conditions();
    expect(conditions[0]).toMatchObject({ type: 'Ready', ...want.ready });
    if (want.conditions) for (const [i, c] of want.conditions.entries()) expect(conditions[i]).toMatchObject(c);
  });
});

interface TransitionCase {
  name: string;
  given: { previous: ConditionT; next: ConditionState };
  expect: { lastTransitionTime: string };
}

const transitions: TransitionCase[] = [
  {
    name: 'lastTransitionTime stays when the status is unchanged',
    given: { previous: cond('A', 'True', 'AOk'), next: { status: 'True', reason: 'AOk', message: '' } },
    expect: { lastTransitionTime: T0 },
  },
  {
    name: 'lastTransitionTime stays when only the reason or message changes',
    given: { previous: cond('A', 'False', 'X', 'x'), next: { status: 'False', reason: 'Y', message: 'y' } },
    expect: { lastTransitionTime: T0 },
  },
  {
    name: 'lastTransitionTime moves when the status flips',
    given: { previous: cond('A', 'False', 'X'), next: { status: 'True', reason: 'AOk', message: '' } },
    expect: { lastTransitionTime: T1 },
  },
  {
    name: 'lastTransitionTime moves from Unknown to False',
    given: { previous: cond('A', 'Unknown', 'X'), next: { status: 'False', reason: 'X', message: '' } },
    expect: { lastTransitionTime: T1 },
  },
];

describe('ConditionManager lastTransitionTime', () => {
  it.each(transitions)('$name', ({ given, expect: want }) => {
    const manager = set.manage([given.previous], { generation: 1, now: T1 });
    manager.mark('A', given.next);
    expect(manager.conditions().find((c) => c.type === 'A')?.lastTransitionTime).toBe(want.lastTransitionTime);
  });

  it('rewriting the same state yields identical conditions (so no status write)', () => {
    const first = set.manage(undefined, { generation: 1, now: T0 });
    first.markTrue('A', 'AOk');
    first.markFalse('B', 'Broken', 'b');
    const again = set.manage(first.conditions(), { generation: 1, now: T1 });
    again.markTrue('A', 'AOk');
    again.markFalse('B', 'Broken', 'b');
    expect(again.conditions()).toEqual(first.conditions());
  });

  it('formats times as RFC 3339 with second precision', () => {
    expect(conditionTime(new Date('2026-03-04T05:06:07.890Z'))).toBe('2026-03-04T05:06:07Z');
  });
});

const deployment = (status: V1Deployment['status'], generation = 1, replicas = 1): V1Deployment => ({
  metadata: { name: 'fn', generation },
  spec: { replicas, selector: {}, template: {} },
  ...(status ? { status } : {}),
});

const readinessCases: { name: string; given: V1Deployment | undefined; expect: Partial<ConditionState> }[] = [
  { name: 'a missing Deployment is Unknown', given: undefined, expect: { status: 'Unknown', reason: 'DeploymentMissing' } },
  {
    name: 'a generation the Deployment controller has not observed is Unknown (RolloutPending)',
    given: deployment({ observedGeneration: 1 }, 2),
    expect: { status: 'Unknown', reason: 'RolloutPending' },
  },
  {
    name: 'no Available condition yet is Unknown',
    given: deployment({ observedGeneration: 1 }),
    expect: { status: 'Unknown', reason: 'RolloutPending' },
  },
  {
    name: 'Available=True is True, with the ready replica count',
    given: deployment({ observedGeneration: 1, readyReplicas: 2, conditions: [{ type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable' }] }, 1, 2),
    expect: { status: 'True', reason: 'Available', message: '2/2 replicas ready' },
  },
  {
    name: "Available=False is False with the Deployment's reason and message (no pods can run)",
    given: deployment({
      observedGeneration: 1,
      conditions: [{ type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'Deployment does not have minimum availability.' }],
    }),
    expect: { status: 'False', reason: 'MinimumReplicasUnavailable', message: '0/1 replicas ready: Deployment does not have minimum availability.' },
  },
  {
    name: 'a rollout past its progress deadline is False',
    given: deployment({
      observedGeneration: 1,
      conditions: [
        { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable' },
        { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "fn-1" has timed out progressing.' },
      ],
    }),
    expect: { status: 'False', reason: 'ProgressDeadlineExceeded' },
  },
  {
    name: 'a replica failure (quota, admission) is False with its reason',
    given: deployment({
      observedGeneration: 1,
      conditions: [{ type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate', message: 'exceeded quota' }],
    }),
    expect: { status: 'False', reason: 'FailedCreate', message: '0/1 replicas ready: exceeded quota' },
  },
];

describe('deploymentReadiness', () => {
  it.each(readinessCases)('$name', ({ given, expect: want }) => {
    expect(deploymentReadiness(given)).toMatchObject(want);
  });
});

describe('FunctionLifecycle', () => {
  const fn = { metadata: { name: 'hello', namespace: 'food', generation: 3 } };
  const available = deployment({ observedGeneration: 1, readyReplicas: 1, conditions: [{ type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable' }] });

  it('is Ready with url, readyReplicas and observedGeneration once Deployment and Service are ready', () => {
    const lifecycle = new FunctionLifecycle(fn, T0);
    lifecycle.propagateDeployment(available);
    lifecycle.propagateService({ spec: { clusterIP: '10.0.0.12' } });
    expect(lifecycle.status()).toMatchObject({
      url: 'http://hello.food.svc.cluster.local',
      readyReplicas: 1,
      observedGeneration: 3,
      conditions: [
        { type: 'Ready', status: 'True' },
        { type: 'DeploymentReady', status: 'True' },
        { type: 'ServiceReady', status: 'True' },
      ],
    });
  });

  it("reports zero ready replicas and the Deployment's reason while no pod is ready", () => {
    const lifecycle = new FunctionLifecycle(fn, T0);
    lifecycle.propagateDeployment(deployment({ observedGeneration: 1, conditions: [{ type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'no' }] }));
    lifecycle.propagateService({ spec: { clusterIP: '10.0.0.12' } });
    const status = lifecycle.status();
    expect(status.readyReplicas).toBe(0);
    expect(status.conditions?.[0]).toMatchObject({ type: 'Ready', status: 'False', reason: 'MinimumReplicasUnavailable' });
  });

  it('reports an API server refusal of the Deployment as DeploymentReady=False ApplyFailed', () => {
    const lifecycle = new FunctionLifecycle(fn, T0);
    lifecycle.markDeploymentApplyFailed('exceeded quota');
    expect(lifecycle.status().conditions?.[0]).toMatchObject({ status: 'False', reason: 'ApplyFailed', message: 'exceeded quota' });
  });

  it('keeps url and readyReplicas from before when an invalid spec stops the reconcile', () => {
    const lifecycle = new FunctionLifecycle({ ...fn, status: { url: 'http://hello.food.svc.cluster.local', readyReplicas: 2 } }, T0);
    lifecycle.markInvalidSpec('spec.port: must be <= 65535');
    const status = lifecycle.status();
    expect(status).toMatchObject({ url: 'http://hello.food.svc.cluster.local', readyReplicas: 2 });
    expect(status.conditions?.[0]).toMatchObject({ type: 'Ready', status: 'False', reason: 'InvalidSpec', message: 'spec.port: must be <= 65535' });
  });
});

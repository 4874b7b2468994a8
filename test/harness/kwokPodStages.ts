/**
 * kwok pod Stages (kwok.x-k8s.io/v1alpha1, `kwok --config`) that make pods on fake nodes become
 * Running at once and Ready only after a delay, as a real image pull and start would.
 *
 * kwok replaces all of its default pod stages (kustomize/stage/pod/fast: pod-ready, pod-complete,
 * pod-delete) as soon as a config holds any pod Stage, so this set restates the other two:
 * - pod-running: bound pod without an IP → IP, phase Running, containers running but not ready.
 * - pod-ready (delayed): Running pod whose Ready condition is False → Ready, containers ready.
 * - pod-complete: a Job's pod completes once Ready (the default completes any Running Job pod; the
 *   extra Ready requirement keeps it from racing pod-ready, kwok picks randomly among matches).
 * - pod-delete: unchanged from the default: a pod with a deletionTimestamp is deleted at once.
 * Node stages are not touched (kwok keeps its defaults when a config has no node Stage).
 */

const POD = { apiGroup: 'v1', kind: 'Pod' } as const;

interface MatchExpression {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

/** The subset of kwok's Stage we write. */
interface Stage {
  apiVersion: 'kwok.x-k8s.io/v1alpha1';
  kind: 'Stage';
  metadata: { name: string };
  spec: {
    resourceRef: typeof POD;
    selector: { matchExpressions: MatchExpression[] };
    delay?: { durationMilliseconds: number };
    next: { statusTemplate?: string; finalizers?: { empty: true }; delete?: true };
  };
}

const notDeleting: MatchExpression = { key: '.metadata.deletionTimestamp', operator: 'DoesNotExist' };
const running: MatchExpression = { key: '.status.phase', operator: 'In', values: ['Running'] };
const readyIs = (status: 'True' | 'False'): MatchExpression => ({
  key: '.status.conditions.[] | select( .type == "Ready" ) | .status',
  operator: 'In',
  values: [status],
});

function stage(name: string, matchExpressions: MatchExpression[], next: Stage['spec']['next'], delayMs?: number): Stage {
  return {
    apiVersion: 'kwok.x-k8s.io/v1alpha1',
    kind: 'Stage',
    metadata: { name },
    spec: {
      resourceRef: POD,
      selector: { matchExpressions },
      ...(delayMs === undefined ? {} : { delay: { durationMilliseconds: delayMs } }),
      next,
    },
  };
}

// Go templates rendered by kwok into a strategic-merge patch of `status` (conditions merge by type;
// containerStatuses are replaced whole, so each stage writes them all).
const RUNNING_STATUS = `
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: ContainersNotReady
  type: ContainersReady
{{ range .spec.readinessGates }}
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: {{ .conditionType | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  {{ if eq .restartPolicy "Always" }}
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
  {{ else }}
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
  {{ end }}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
`;

const READY_STATUS = `
{{ $now := Now }}
{{ $root := . }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $root.status.startTime | Quote }}
{{ end }}
`;

// As kwok's default pod-complete.
const COMPLETE_STATUS = `
{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Succeeded
`;

/**
 * The pod Stages for `kwok --config`, as one multi-document YAML text (JSON documents, which YAML
 * reads), with pods turning Ready `readyDelayMs` after kwok marks them Running. kwok restarts the
 * delay whenever the pod changes meanwhile (it re-matches on every new resourceVersion).
 */
export function delayedReadyPodStages(readyDelayMs: number): string {
  if (!Number.isInteger(readyDelayMs) || readyDelayMs < 0) throw new RangeError(`readyDelayMs must be a whole number ≥ 0, got ${readyDelayMs}`);
  const stages = [
    stage('pod-running', [notDeleting, { key: '.status.podIP', operator: 'DoesNotExist' }], { statusTemplate: RUNNING_STATUS }),
    stage('pod-ready', [notDeleting, running, readyIs('False')], { statusTemplate: READY_STATUS }, readyDelayMs),
    stage('pod-complete', [notDeleting, running, readyIs('True'), { key: '.metadata.ownerReferences.[].kind', operator: 'In', values: ['Job'] }], { statusTemplate: COMPLETE_STATUS }),
    stage('pod-delete', [{ key: '.metadata.deletionTimestamp', operator: 'Exists' }], { finalizers: { empty: true }, delete: true }),
  ];
  return `${stages.map((s) => JSON.stringify(s, null, 2)).join('\n---\n')}\n`;
}

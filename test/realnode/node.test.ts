/**
 * Smoke test of the real-node harness (test/harness/realNode.ts): real containers from a local image,
 * a Deployment behind a Service reached from another pod by ClusterIP and by DNS name, kubectl logs and
 * exec; then stop() and a check that the host is as it was. Needs root; a cold machine first installs
 * packages and builds kubelet, kube-proxy and CoreDNS (test/realnode/build.sh, many minutes).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeCgroups } from '../harness/realNode/cgroups.js';
import { currentMountPoints, HOST_PATHS, listTree, newMountsUnder } from '../harness/realNode/hostPaths.js';
import { captureHost, type HostSnapshot, linkNames, readRecord } from '../harness/realNode/hostRecord.js';
import { emptyNewTables, iptablesUndoScript, saveIptables } from '../harness/realNode/iptables.js';
import { pidsWithCommandLine } from '../harness/realNode/processes.js';
import { readSysctls, sysctlChanges } from '../harness/realNode/sysctls.js';
import { makeNodeRootfs, type RealNode, realNodeUnsupportedReason, startRealNode } from '../harness/realNode.js';

/** The node's watchdog (it has the run dir on its command line) lives until the release, by design. */
const isWatchdog = (pid: number): boolean => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('realNode/teardown.ts');

const skipReason = realNodeUnsupportedReason();
if (skipReason) console.warn(`[realnode] skipping the real-node smoke test: ${skipReason}`);

/**
 * A cold machine installs packages and builds kubelet, kube-proxy and CoreDNS (~9 min on 2 cores) before
 * the node starts, and another real-node test file may hold the machine (startRealNode waits up to 30 min).
 */
const START_TIMEOUT = 50 * 60_000;
const TIMEOUT = 120_000;

const ECHO_SERVER = `
const http = require('http');
let n = 0;
http.createServer((req, res) => {
  n++;
  console.log('request', n, req.method, req.url, 'from', req.socket.remoteAddress);
  res.end('hello from ' + require('os').hostname() + '\\n');
}).listen(8080, () => console.log('listening on 8080'));
`;

/** Run in the client pod: GETs with retries (kube-proxy programs a new Service about a second late). */
const CLIENT_CHECKS = `
const http = require('http'), https = require('https'), fs = require('fs');
const get = (url, opts = {}) => new Promise((resolve, reject) => {
  const req = (url.startsWith('https') ? https : http).get(url, { timeout: 3000, ...opts }, (res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => resolve({ status: res.statusCode, body }));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', reject);
});
const retry = async (url, opts) => {
  let last;
  for (let i = 0; i < 60; i++) {
    try { return await get(url, opts); } catch (e) { last = e; await new Promise((r) => setTimeout(r, 250)); }
  }
  return { error: String(last) };
};
(async () => {
  const sa = '/var/run/secrets/kubernetes.io/serviceaccount/';
  const auth = { ca: fs.readFileSync(sa + 'ca.crt'), headers: { Authorization: 'Bearer ' + fs.readFileSync(sa + 'token', 'utf8') } };
  console.log(JSON.stringify({
    clusterIp: await retry('http://' + process.argv[1] + '/'),
    shortName: await retry('http://echo/'),
    fqdn: await retry('http://echo.default.svc.cluster.local/'),
    apiserver: await retry('https://kubernetes.default.svc/version', auth),
  }));
})();
`;

function workload(image: string): string {
  const labels = { app: 'echo' };
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'echo' },
        spec: {
          replicas: 1,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              containers: [
                {
                  name: 'echo',
                  image,
                  imagePullPolicy: 'Never',
                  command: ['node', '-e', ECHO_SERVER],
                  ports: [{ containerPort: 8080 }],
                  readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 },
                  resources: { limits: { cpu: '200m', memory: '128Mi' } },
                },
              ],
            },
          },
        },
      },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo' }, spec: { selector: labels, ports: [{ port: 80, targetPort: 8080 }] } },
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'client' },
        spec: {
          containers: [{ name: 'client', image, imagePullPolicy: 'Never', command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'] }],
        },
      },
    ],
  });
}

describe.skipIf(skipReason !== undefined)('a real node', () => {
  let node: RealNode;
  let before: HostSnapshot;
  let controlPlaneDir = '';
  let rootfsDir = '';

  /** The host as `before` had it: no process, pod cgroup, rule, link, mount, sysctl or file of the node. */
  const assertNothingLeft = async (): Promise<void> => {
    expect(pidsWithCommandLine(node.dataDir), 'processes of the node').toEqual([]);
    expect(
      pidsWithCommandLine(node.runDir).filter((pid) => !isWatchdog(pid)),
      'processes of the node',
    ).toEqual([]);
    expect(pidsWithCommandLine(controlPlaneDir), 'processes of the control plane').toEqual([]);
    expect(nodeCgroups(), 'pod cgroups').toEqual(before.cgroups);
    for (const [command, saved] of Object.entries(before.iptables)) {
      const now = await saveIptables(command);
      const chains = (text: string) =>
        text
          .split('\n')
          .filter((l) => /^:(KUBE|CNI)-/.test(l))
          .map((l) => l.split(' ')[0]);
      expect(chains(now), `${command} KUBE-/CNI- chains`).toEqual(chains(saved));
      expect(iptablesUndoScript(saved, now), `${command} rules added`).toBe('');
      expect(emptyNewTables(saved, now), `${command} tables added`).toEqual([]);
    }
    const links = await linkNames();
    expect(
      links.filter((l) => !before.links.includes(l)),
      'new links (cni0, veths)',
    ).toEqual([]);
    expect(newMountsUnder([node.dataDir, node.runDir, ...HOST_PATHS], before.mountPoints), 'mounts').toEqual([]);
    expect(currentMountPoints().filter((m) => m.includes('eventide-node'))).toEqual([]);
    expect(sysctlChanges(before.sysctls, readSysctls()), 'sysctls').toEqual([]);
    for (const path of HOST_PATHS) expect(listTree(path), path).toEqual(before.hostPaths[path]);
    expect(listTree(node.dataDir), node.dataDir).toBeNull();
    expect(listTree(node.logsDir), node.logsDir).toBeNull();
  };

  beforeAll(async () => {
    rootfsDir = mkdtempSync(join(tmpdir(), 'node-rootfs-'));
    before = await captureHost();
    node = await startRealNode();
    controlPlaneDir = node.controlPlane.dir;
  }, START_TIMEOUT);

  afterAll(async () => {
    if (rootfsDir) rmSync(rootfsDir, { recursive: true, force: true });
    await node?.stop();
  }, TIMEOUT);

  it(
    'registers a Ready node running CoreDNS, with the pinned kubelet and containerd',
    async () => {
      const info = await node.kubectl(['get', 'node', node.nodeName, '-o', 'jsonpath={.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}']);
      expect(info.code, info.stderr).toBe(0);
      expect(info.stdout).toMatch(/^v1\.\d+\.\d+ containerd:\/\/1\./);
      const dns = await node.kubectl(['-n', 'kube-system', 'get', 'pods', '-l', 'k8s-app=kube-dns', '-o', 'jsonpath={.items[0].status.phase}']);
      expect(dns.stdout).toBe('Running');
    },
    TIMEOUT,
  );

  it(
    'runs a local image behind a Service that another pod reaches by ClusterIP and DNS name; logs and exec work',
    async () => {
      let t = Date.now();
      const image = await node.makeImage(await makeNodeRootfs(rootfsDir), 'localhost/node20-slim:test', { cmd: ['node'] });
      console.error(`[realnode test] node 20 image made and imported in ${((Date.now() - t) / 1000).toFixed(1)}s`);

      t = Date.now();
      const applied = await node.kubectl(['apply', '-f', '-'], workload(image));
      expect(applied.code, applied.stderr).toBe(0);
      const rollout = await node.kubectl(['rollout', 'status', 'deploy/echo', '--timeout=90s']);
      expect(rollout.code, rollout.stderr + (await node.kubectl(['describe', 'pods'])).stdout).toBe(0);
      console.error(`[realnode test] first pod Ready ${((Date.now() - t) / 1000).toFixed(1)}s after apply`);
      const client = await node.kubectl(['wait', '--for=condition=Ready', 'pod/client', '--timeout=60s']);
      expect(client.code, client.stderr).toBe(0);

      const clusterIp = (await node.kubectl(['get', 'service', 'echo', '-o', 'jsonpath={.spec.clusterIP}'])).stdout;
      expect(clusterIp).toMatch(/^10\.96\.0\.\d+$/);
      const exec = await node.kubectl(['exec', 'client', '--', 'node', '-e', CLIENT_CHECKS, clusterIp]);
      expect(exec.code, exec.stderr).toBe(0);
      const seen = JSON.parse(exec.stdout) as Record<string, { status?: number; body?: string; error?: string }>;
      for (const how of ['clusterIp', 'shortName', 'fqdn']) {
        expect(seen[how], how).toMatchObject({ status: 200, body: expect.stringMatching(/^hello from echo-/) });
      }
      expect(seen.apiserver, 'pod -> kubernetes.default.svc with its token').toMatchObject({ status: 200, body: expect.stringContaining('"gitVersion"') });

      const logs = await node.kubectl(['logs', 'deploy/echo']);
      expect(logs.code, logs.stderr).toBe(0);
      expect(logs.stdout).toContain('listening on 8080');
      expect(logs.stdout).toMatch(/request \d+ GET \/ from /);
    },
    TIMEOUT,
  );

  it(
    'stops and leaves nothing behind',
    async () => {
      const t = Date.now();
      // Checked before the machine is released: another test file may start its node right after.
      await node.stop({ beforeRelease: assertNothingLeft });
      console.error(`[realnode test] stopped and checked in ${((Date.now() - t) / 1000).toFixed(1)}s`);
      // Released: the run dir (with the record) is gone, or is another node's already.
      expect(readRecord(join(node.runDir, 'record.json'))?.owner.pid).not.toBe(process.pid);
    },
    TIMEOUT,
  );
});

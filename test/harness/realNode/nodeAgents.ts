/**
 * The node agents: kubelet (registers the node, runs pods through containerd's CRI) and kube-proxy
 * (Services as iptables rules), each with its own identity from the control plane's CA and a config
 * file from nodeConfig.ts.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ControlPlane } from '../controlPlane.js';
import { kubeletConfig, kubeProxyConfig, type NodeNetwork } from './nodeConfig.js';
import { type ProcessRef, spawnLogged } from './processes.js';

export interface AgentDirs {
  /** kubelet and kube-proxy binaries */
  binDir: string;
  /** kubelet root, pod logs (removed at teardown) */
  dataDir: string;
  /** config files */
  runDir: string;
  logsDir: string;
}

/** Starts kubelet as `system:node:<name>` (what the Node authorizer expects); returns at once. */
export async function startKubelet(cp: ControlPlane, net: NodeNetwork, dirs: AgentDirs, containerdSocket: string): Promise<ProcessRef> {
  const kubeconfig = await cp.issueKubeconfig('kubelet', { cn: `system:node:${net.nodeName}`, org: 'system:nodes' });
  const resolvConf = join(dirs.dataDir, 'resolv.conf');
  writeFileSync(resolvConf, '# pods with dnsPolicy Default: no upstream nameserver (see kubeletConfig)\n');
  const configPath = join(dirs.runDir, 'kubelet-config.yaml');
  writeFileSync(configPath, kubeletConfig(net, { clientCaFile: cp.caCertPath, containerdSocket, podLogsDir: join(dirs.dataDir, 'pod-logs'), resolvConf }));
  return spawnLogged(
    'kubelet',
    join(dirs.binDir, 'kubelet'),
    [
      `--config=${configPath}`,
      `--kubeconfig=${kubeconfig}`,
      `--root-dir=${join(dirs.dataDir, 'kubelet')}`,
      `--cert-dir=${join(dirs.dataDir, 'kubelet-pki')}`,
      `--hostname-override=${net.nodeName}`,
      `--node-ip=${net.nodeIp}`,
      '--v=1',
    ],
    join(dirs.logsDir, 'kubelet.log'),
  ).ref;
}

/** Starts kube-proxy as `system:kube-proxy` (bound to its role by the RBAC bootstrap policy); returns at once. */
export async function startKubeProxy(cp: ControlPlane, net: NodeNetwork, dirs: AgentDirs): Promise<ProcessRef> {
  const kubeconfig = await cp.issueKubeconfig('kube-proxy', { cn: 'system:kube-proxy' });
  const configPath = join(dirs.runDir, 'kube-proxy-config.yaml');
  writeFileSync(configPath, kubeProxyConfig(net, kubeconfig));
  return spawnLogged('kube-proxy', join(dirs.binDir, 'kube-proxy'), [`--config=${configPath}`, '--v=1'], join(dirs.logsDir, 'kube-proxy.log')).ref;
}

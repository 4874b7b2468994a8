/**
 * Configuration files of a real node's components, as pure builders: containerd, kubelet, kube-proxy
 * and the CNI network. Each setting that is not a default says why.
 */

/** Addresses of the node's networks. */
export interface NodeNetwork {
  nodeName: string;
  nodeIp: string;
  /** This node's pod addresses (CNI host-local IPAM hands them out). */
  podCidr: string;
  /** Every pod address in the cluster (kube-proxy masquerades traffic from outside it). */
  clusterCidr: string;
  /** ClusterIP of CoreDNS's Service, given to every pod as its nameserver. */
  clusterDnsIp: string;
}

export interface ContainerdPaths {
  root: string;
  state: string;
  socket: string;
  runcRoot: string;
  cniConfDir: string;
  cniBinDir: string;
  optDir: string;
}

/** containerd 1.6 config: CRI with runc, cgroupfs, overlayfs, our own socket and dirs, a local pause image. */
export function containerdConfig(p: ContainerdPaths, sandboxImage: string): string {
  return `version = 2
root = "${p.root}"
state = "${p.state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${p.socket}"

[plugins."io.containerd.grpc.v1.cri"]
  # Nothing can be pulled here: the pause image is imported locally before any pod starts.
  sandbox_image = "${sandboxImage}"
  # Root without CAP_SYS_RESOURCE (these VMs) cannot lower oom_score_adj below 0, and the pause
  # container asks for -998: without this every pod fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${p.runcRoot}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${p.cniBinDir}"
    conf_dir = "${p.cniConfDir}"

[plugins."io.containerd.internal.v1.opt"]
  path = "${p.optDir}"
`;
}

/** One bridge (cni0) for every pod, host-local addresses, masquerade out, hairpin (a pod reaching itself through its Service). */
export function cniConflist(net: NodeNetwork, ipamDir: string): string {
  return JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: 'eventide-node',
      plugins: [
        {
          type: 'bridge',
          bridge: 'cni0',
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: net.podCidr }]], routes: [{ dst: '0.0.0.0/0' }] },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

export interface KubeletPaths {
  clientCaFile: string;
  containerdSocket: string;
  podLogsDir: string;
  resolvConf: string;
}

/** KubeletConfiguration: webhook auth against the apiserver, cgroupfs, a node that never evicts or collects images. */
export function kubeletConfig(net: NodeNetwork, p: KubeletPaths): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "${p.clientCaFile}"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: "unix://${p.containerdSocket}"
cgroupDriver: cgroupfs
# These VMs have swap off but run cgroup v1, which kubelet refuses by default since 1.31.
failSwapOn: false
failCgroupV1: false
address: "${net.nodeIp}"
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
clusterDomain: cluster.local
clusterDNS: ["${net.clusterDnsIp}"]
# Not the host's: pods asking for a name outside the cluster get no upstream server to ask.
resolvConf: "${p.resolvConf}"
podCIDR: "${net.podCidr}"
maxPods: 110
podLogsDir: "${p.podLogsDir}"
# Imported images cannot be pulled again: never garbage-collect them. A busy CI disk must not evict pods.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
`;
}

/** KubeProxyConfiguration: iptables mode, conntrack sysctls and localhost NodePorts left alone. */
export function kubeProxyConfig(net: NodeNetwork, kubeconfigPath: string): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "${kubeconfigPath}"}
mode: iptables
clusterCIDR: ${net.clusterCidr}
hostnameOverride: ${net.nodeName}
bindAddress: ${net.nodeIp}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
# NodePorts on 127.0.0.1 would need net.ipv4.conf.all.route_localnet=1 on the host.
iptables: {localhostNodePorts: false}
# Zeros: keep the host's conntrack table size and timeouts instead of kube-proxy's.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`;
}

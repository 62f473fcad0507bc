import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmdirSync, statSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, readlink, rm, unlink, writeFile } from "node:fs/promises";
import { homedir, networkInterfaces, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { clientCert, type Pki, writeKubeconfig } from "./certs.ts";
import { freePort, type Supervised, supervise, waitFor } from "./process.ts";

const run = promisify(execFile);

/**
 * One real node for the local control plane: containerd (runc, bridge CNI), kubelet,
 * kube-proxy (iptables mode: Service VIPs work) and kube-scheduler as plain processes, everything they write kept under `<workDir>`, and a stop
 * that leaves nothing behind (processes, mounts, iptables chains, cni0, sysctls).
 * Linux and root only; hack/node/install.sh installs the Debian packages it uses.
 */
export interface NodeOptions {
  /** Node name (default "ghat-node"). */
  name?: string;
  /** Pod subnet of the cni0 bridge (default 10.244.0.0/24). */
  podCidr?: string;
  /** Give up waiting for the Node to be Ready after this long. */
  timeoutMs?: number;
  /** Progress lines ("Starting containerd", …). */
  progress?: (line: string) => void;
}

export interface NodeContext {
  /** Directory with kubelet and kube-scheduler. */
  binDir: string;
  /** The node's own work dir (created; removed on stop). */
  workDir: string;
  pki: Pki;
  server: string;
  adminKubeconfig: string;
  /** The node's address, when the caller chose it (`nodeIp()`) before starting the API server. */
  address?: { ip: string; madeDummy: boolean };
}

export interface LocalNode {
  name: string;
  /** The address the Node reports as InternalIP. */
  ip: string;
  /** containerd's socket (for `ctr --address`). */
  containerdAddress: string;
  /** The pause image containerd uses for pod sandboxes. */
  pauseImage: string;
  /** Imports a docker-save tarball into the node's containerd (namespace k8s.io). */
  importImage(tarball: string): Promise<void>;
  /** Resident memory (KiB) of containerd, kubelet, kube-proxy and kube-scheduler. */
  memory(): Record<string, number>;
  stop(): Promise<void>;
}

const repoRoot = new URL("../../", import.meta.url).pathname;
export const pauseImage = "ghat.local/pause:3.10";
const cniBinDir = "/usr/lib/cni";
const bridge = "cni0";
const dummyLink = "ghat-node0";
const dummyAddress = "10.254.254.1";
const iptablesTables = ["filter", "nat", "mangle"];
/** Kernel tunables kubelet sets at start (setupKernelTunables): restored on stop. */
const sysctls = [
  "net/ipv4/ip_forward",
  // kube-proxy's (conntrack limits are left alone by its config, route_localnet is not needed).
  "net/ipv4/conf/all/route_localnet",
  "net/netfilter/nf_conntrack_max",
  "net/netfilter/nf_conntrack_tcp_timeout_established",
  "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
];

export function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "ghat", "node");
}

/** Starts containerd, kubelet, kube-proxy and kube-scheduler and waits until the Node is Ready. */
export async function startNode(ctx: NodeContext, options: NodeOptions = {}): Promise<LocalNode> {
  if (process.platform !== "linux" || process.getuid?.() !== 0)
    throw new Error("the local node needs Linux and root (containerd, runc, iptables, mounts)");
  const name = options.name ?? "ghat-node";
  const podCidr = options.podCidr ?? "10.244.0.0/24";
  const timeoutMs = options.timeoutMs ?? 180_000;
  const say = options.progress ?? (() => {});
  const w = ctx.workDir;
  await stopLeftovers(w);
  await mkdir(w, { recursive: true });
  say("Checking the node's Debian packages (hack/node/install.sh installs what is missing)");
  await run("bash", [join(repoRoot, "hack/node/install.sh")], { timeout: 600_000 });
  const before = await snapshot();
  await writeFile(join(w, "host-before.json"), JSON.stringify(before));
  const dirs = {
    containerd: join(w, "containerd"),
    cniConf: join(w, "cni", "net.d"),
    cniData: join(w, "cni", "ipam"),
    kubelet: join(w, "kubelet"),
    podLogs: join(w, "pod-logs"),
    manifests: join(w, "manifests"),
  };
  await Promise.all(Object.values(dirs).map((d) => mkdir(d, { recursive: true })));
  const sock = join(dirs.containerd, "containerd.sock");
  const procs: Supervised[] = [];
  const pidFile = (n: string) => join(w, `${n}.pid`);
  const log = (n: string) => join(w, `${n}.log`);
  let ip = "";
  let madeDummy = false;

  const node: LocalNode = {
    name,
    get ip() {
      return ip;
    },
    containerdAddress: sock,
    pauseImage,
    importImage: (tarball) => importImage(sock, tarball),
    memory() {
      const out: Record<string, number> = {};
      for (const p of procs) {
        const pid = readPid(pidFile(p.name));
        const m = pid ? safeRead(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+)/) : null;
        if (m?.[1]) out[p.name] = Number(m[1]);
      }
      return out;
    },
    async stop() {
      await stopNodeProcesses(w, sock, procs, !before.kubepods);
      await cleanupHost(w, before, madeDummy);
      await rm(w, { recursive: true, force: true });
    },
  };

  try {
    // containerd: a private instance, everything under the work dir.
    await writeFile(join(dirs.containerd, "config.toml"), containerdConfig(dirs.containerd, dirs.cniConf));
    await writeFile(join(dirs.cniConf, "10-ghat.conflist"), cniConfig(podCidr, dirs.cniData));
    say("Starting containerd");
    procs.push(
      supervise(
        "containerd",
        "containerd",
        ["--config", join(dirs.containerd, "config.toml")],
        log("containerd"),
        pidFile("containerd"),
      ),
    );
    await waitFor(
      "containerd",
      timeoutMs,
      procs[0],
      async () => {
        await run("ctr", ["--address", sock, "version"], { timeout: 5000 });
        return true;
      },
      500,
    );
    say("Loading the pause image");
    await importImage(sock, await buildPauseImage(say));

    ({ ip, madeDummy } = ctx.address ?? (await nodeIp()));
    const kubeletPort = await freePort();
    const nodeCert = await clientCert(ctx.pki.dir, `node-${name}`, `system:node:${name}`, ["system:nodes"]);
    const kubeletKubeconfig = join(w, "kubelet.kubeconfig");
    await writeKubeconfig(
      kubeletKubeconfig,
      ctx.server,
      ctx.pki.caCert,
      nodeCert.cert,
      nodeCert.key,
      `system:node:${name}`,
    );
    const sched = await clientCert(ctx.pki.dir, "kube-scheduler", "system:kube-scheduler", []);
    const schedKubeconfig = join(w, "kube-scheduler.kubeconfig");
    await writeKubeconfig(
      schedKubeconfig,
      ctx.server,
      ctx.pki.caCert,
      sched.cert,
      sched.key,
      "system:kube-scheduler",
    );
    // kube-proxy as the user the built-in system:node-proxier binding names.
    const proxyCert = await clientCert(ctx.pki.dir, "kube-proxy", "system:kube-proxy", []);
    const proxyKubeconfig = join(w, "kube-proxy.kubeconfig");
    await writeKubeconfig(
      proxyKubeconfig,
      ctx.server,
      ctx.pki.caCert,
      proxyCert.cert,
      proxyCert.key,
      "system:kube-proxy",
    );
    // The Node authorizer covers what a kubelet reads about its own pods; the rest of its API
    // calls (token and access reviews for its webhook authn/authz, events) need system:node.
    await kubectlApply(ctx.adminKubeconfig, nodeRoleBinding);

    const config = join(w, "kubelet-config.yaml");
    await writeFile(
      config,
      kubeletConfig({
        sock,
        podLogs: dirs.podLogs,
        manifests: dirs.manifests,
        caCert: ctx.pki.caCert,
        ip,
        kubeletPort,
        podCidr,
      }),
    );
    say(`Starting kubelet (node ${name}, ${ip}) and kube-scheduler`);
    procs.push(
      supervise(
        "kubelet",
        join(ctx.binDir, "kubelet"),
        [
          `--config=${config}`,
          `--kubeconfig=${kubeletKubeconfig}`,
          `--root-dir=${dirs.kubelet}`,
          `--cert-dir=${join(dirs.kubelet, "pki")}`,
          `--hostname-override=${name}`,
          `--node-ip=${ip}`,
          "-v=1",
        ],
        log("kubelet"),
        pidFile("kubelet"),
      ),
    );
    procs.push(
      supervise(
        "kube-scheduler",
        join(ctx.binDir, "kube-scheduler"),
        [
          `--kubeconfig=${schedKubeconfig}`,
          `--authentication-kubeconfig=${schedKubeconfig}`,
          `--authorization-kubeconfig=${schedKubeconfig}`,
          "--leader-elect=false",
          "--bind-address=127.0.0.1",
          `--secure-port=${await freePort()}`,
          "-v=1",
        ],
        log("kube-scheduler"),
        pidFile("kube-scheduler"),
      ),
    );
    const proxyConfig = join(w, "kube-proxy-config.yaml");
    await writeFile(
      proxyConfig,
      kubeProxyConfig({
        kubeconfig: proxyKubeconfig,
        name,
        podCidr,
        healthPort: await freePort(),
        metricsPort: await freePort(),
      }),
    );
    procs.push(
      supervise(
        "kube-proxy",
        join(ctx.binDir, "kube-proxy"),
        [`--config=${proxyConfig}`, "-v=1"],
        log("kube-proxy"),
        pidFile("kube-proxy"),
      ),
    );
    say("Waiting for the Node to be Ready");
    await waitFor(
      `Node ${name} Ready`,
      timeoutMs,
      procs[1],
      async () => {
        const { stdout } = await run(
          "kubectl",
          [
            "--kubeconfig",
            ctx.adminKubeconfig,
            "get",
            "node",
            name,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
          ],
          { timeout: 10_000 },
        );
        if (procs[2]?.child.exitCode !== null) throw new Error("kube-scheduler exited; see its log");
        if (procs[3]?.child.exitCode !== null) throw new Error("kube-proxy exited; see its log");
        return stdout.trim() === "True";
      },
      500,
    );
    return node;
  } catch (err) {
    await node.stop().catch(() => undefined);
    throw err;
  }
}

/**
 * Stops the node whose work dir this is and undoes what it did to the host, from what the dir
 * records: for callers holding only the dir (`ghat cluster down` after a crashed daemon, a
 * rerun after a crash). A no-op when there is no node there.
 */
export async function stopNode(workDir: string): Promise<void> {
  await stopLeftovers(workDir);
}

const nodeRoleBinding = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ghat:nodes
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:node
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: system:nodes
`;

async function kubectlApply(kubeconfig: string, manifest: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = execFile(
      "kubectl",
      ["--kubeconfig", kubeconfig, "apply", "-f", "-"],
      { timeout: 30_000 },
      (err, _out, stderr) => (err ? reject(new Error(`kubectl apply: ${stderr || err.message}`)) : resolve()),
    );
    child.stdin?.end(manifest);
  });
}

function containerdConfig(dir: string, cniConf: string): string {
  return `version = 2
root = "${join(dir, "root")}"
state = "${join(dir, "state")}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${join(dir, "containerd.sock")}"

[ttrpc]
  address = "${join(dir, "containerd.sock.ttrpc")}"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "${join(dir, "opt")}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseImage}"
  # Root here may lack CAP_SYS_RESOURCE: runc then fails to lower oom_score_adj ("can't get
  # final child's PID from pipe"). This keeps containers' oom_score_adj >= containerd's.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${cniBinDir}"
    conf_dir = "${cniConf}"
`;
}

function cniConfig(podCidr: string, dataDir: string): string {
  // containerd's CRI sets up each sandbox's lo itself with the loopback plugin from bin_dir.
  return `${JSON.stringify(
    {
      cniVersion: "0.4.0",
      name: "ghat",
      plugins: [
        {
          type: "bridge",
          bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: podCidr }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir,
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

function kubeletConfig(c: {
  sock: string;
  podLogs: string;
  manifests: string;
  caCert: string;
  ip: string;
  kubeletPort: number;
  podCidr: string;
}): string {
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
# cgroup v1 hierarchies on these machines; 1.34 already defaults to false.
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://${c.sock}
staticPodPath: ${c.manifests}
podLogsDir: ${c.podLogs}
podCIDR: ${c.podCidr}
address: ${c.ip}
port: ${c.kubeletPort}
readOnlyPort: 0
healthzPort: 0
# kubelet re-reads mounted Secrets and ConfigMaps every syncFrequency (plus up to half of it as
# jitter): with the 1 min default a Secret change reaches a Pod's volume in 55-64 s; with 10 s,
# in about 15 s, which is what tests that rotate Secrets wait for.
syncFrequency: 10s
resolvConf: /etc/resolv.conf
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: ${c.caCert}
authorization:
  mode: Webhook
# Disk and memory are shared with whatever else runs here: only evict when nearly nothing is left,
# and never garbage-collect images (the imported ones cannot be pulled again).
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`;
}

/**
 * kube-proxy in iptables mode: Service VIPs (the `kubernetes` Service's 10.0.0.1 among them)
 * DNAT to their endpoints. Conntrack limits and timeouts stay as the host has them (0: leave
 * alone), and no localhost NodePorts (no route_localnet).
 */
function kubeProxyConfig(c: {
  kubeconfig: string;
  name: string;
  podCidr: string;
  healthPort: number;
  metricsPort: number;
}): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: ${c.kubeconfig}
hostnameOverride: ${c.name}
clusterCIDR: ${c.podCidr}
detectLocalMode: ClusterCIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:${c.healthPort}
metricsBindAddress: 127.0.0.1:${c.metricsPort}
iptables:
  localhostNodePorts: false
  syncPeriod: 10s
  minSyncPeriod: 0s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  tcpBeLiberal: false
  udpTimeout: 0s
  udpStreamTimeout: 0s
`;
}

/**
 * The node's address: the first non-loopback IPv4 address; else a dummy interface with a
 * private address (made once: a second call finds it).
 */
export async function nodeIp(): Promise<{ ip: string; madeDummy: boolean }> {
  for (const [ifname, addrs] of Object.entries(networkInterfaces())) {
    if (ifname === bridge || ifname.startsWith("veth")) continue;
    const a = addrs?.find((x) => x.family === "IPv4" && !x.internal);
    if (a) return { ip: a.address, madeDummy: ifname === dummyLink };
  }
  await run("ip", ["link", "add", dummyLink, "type", "dummy"]);
  await run("ip", ["addr", "add", `${dummyAddress}/32`, "dev", dummyLink]);
  await run("ip", ["link", "set", dummyLink, "up"]);
  return { ip: dummyAddress, madeDummy: true };
}

/** Imports a docker-save tarball into containerd's k8s.io namespace. */
export async function importImage(address: string, tarball: string): Promise<void> {
  await run("ctr", ["--address", address, "-n", "k8s.io", "images", "import", "--no-unpack=false", tarball], {
    timeout: 120_000,
  }).catch(async () => {
    // Older ctr has no --no-unpack flag; unpacking is its default.
    await run("ctr", ["--address", address, "-n", "k8s.io", "images", "import", tarball], {
      timeout: 120_000,
    });
  });
}

/**
 * Packs a root filesystem directory as a one-layer docker-save tarball (manifest.json with
 * RepoTags, a config JSON and layer.tar), which `ctr images import` loads. Nothing is pulled.
 */
export async function dockerArchive(
  rootfs: string,
  tag: string,
  config: { Entrypoint?: string[]; Cmd?: string[]; Env?: string[] },
  out: string,
): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), "ghat-image-"));
  try {
    const layer = join(tmp, "layer.tar");
    // Fixed owner and mtime: the same input gives the same layer digest.
    await run("tar", [
      "--sort=name",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "--mtime=@0",
      "-C",
      rootfs,
      "-cf",
      layer,
      ".",
    ]);
    const diffId = createHash("sha256")
      .update(await readFile(layer))
      .digest("hex");
    await mkdir(join(tmp, diffId));
    await copyFile(layer, join(tmp, diffId, "layer.tar"));
    await rm(layer);
    const arch = process.arch === "x64" ? "amd64" : process.arch;
    const imageConfig = JSON.stringify({
      architecture: arch,
      os: "linux",
      created: "1970-01-01T00:00:00Z",
      config: { Env: ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], ...config },
      rootfs: { type: "layers", diff_ids: [`sha256:${diffId}`] },
      history: [{ created: "1970-01-01T00:00:00Z", created_by: "ghat" }],
    });
    const configId = createHash("sha256").update(imageConfig).digest("hex");
    await writeFile(join(tmp, `${configId}.json`), imageConfig);
    await writeFile(
      join(tmp, "manifest.json"),
      JSON.stringify([{ Config: `${configId}.json`, RepoTags: [tag], Layers: [`${diffId}/layer.tar`] }]),
    );
    await writeFile(join(tmp, "repositories"), JSON.stringify({}));
    await mkdir(dirname(out), { recursive: true });
    await run("tar", ["-C", tmp, "-cf", `${out}.tmp`, "manifest.json", `${configId}.json`, diffId]);
    await run("mv", [`${out}.tmp`, out]);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

const pauseSource = `#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, quit);
  signal(SIGTERM, quit);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
`;

/** Builds the pause image once (a static C program in a one-layer image), cached under ~/.cache/ghat/node. */
async function buildPauseImage(say: (line: string) => void): Promise<string> {
  const digest = createHash("sha256").update(pauseSource).update(pauseImage).digest("hex").slice(0, 12);
  const out = join(cacheDir(), `pause-${digest}.tar`);
  if (existsSync(out)) return out;
  say("Building the pause image (gcc -static)");
  const tmp = await mkdtemp(join(tmpdir(), "ghat-pause-"));
  try {
    await writeFile(join(tmp, "pause.c"), pauseSource);
    await mkdir(join(tmp, "rootfs"));
    await run("gcc", ["-static", "-Os", "-s", "-o", join(tmp, "rootfs", "pause"), join(tmp, "pause.c")]);
    await dockerArchive(join(tmp, "rootfs"), pauseImage, { Entrypoint: ["/pause"] }, out);
    return out;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

interface HostSnapshot {
  chains: Record<string, string[]>;
  links: string[];
  netns: string[];
  sysctls: Record<string, string>;
  varLibCni: boolean;
  containerLogs: boolean;
  netnsDir: boolean;
  /** Whether a kubepods cgroup existed before (another kubelet's): then it is left alone. */
  kubepods: boolean;
}

async function listChains(cmd: string, table: string): Promise<string[]> {
  try {
    const { stdout } = await run(cmd, ["-w", "-t", table, "-S"], { timeout: 30_000 });
    return stdout
      .split("\n")
      .filter((l) => l.startsWith("-N "))
      .map((l) => l.slice(3).trim());
  } catch {
    return [];
  }
}

async function snapshot(): Promise<HostSnapshot> {
  const chains: Record<string, string[]> = {};
  for (const cmd of ["iptables", "ip6tables"])
    for (const t of iptablesTables) chains[`${cmd} ${t}`] = await listChains(cmd, t);
  return {
    chains,
    links: Object.keys(networkInterfaces()),
    netns: listDir("/var/run/netns"),
    sysctls: Object.fromEntries(sysctls.map((k) => [k, safeRead(`/proc/sys/${k}`).trim()])),
    varLibCni: existsSync("/var/lib/cni"),
    containerLogs: existsSync("/var/log/containers"),
    netnsDir: existsSync("/var/run/netns"),
    kubepods: kubepodsRoots().some((r) => existsSync(r)),
  };
}

/** Kills the node's containers, then kubelet, kube-scheduler and containerd. */
async function stopNodeProcesses(
  w: string,
  sock: string,
  procs: Supervised[],
  ownsKubepods: boolean,
  containerdAlive = true,
): Promise<void> {
  const byName = (n: string) => procs.find((p) => p.name === n);
  // kubelet first, so it restarts nothing while the containers go.
  await byName("kube-scheduler")?.stop();
  await byName("kube-proxy")?.stop();
  await byName("kubelet")?.stop();
  await killPid(readPid(join(w, "kubelet.pid")));
  await killPid(readPid(join(w, "kube-proxy.pid")));
  await killPid(readPid(join(w, "kube-scheduler.pid")));
  if (containerdAlive && existsSync(sock)) {
    const ctr = (...a: string[]) =>
      run("ctr", ["--address", sock, "-n", "k8s.io", ...a], { timeout: 30_000 }).catch(() => ({
        stdout: "",
      }));
    const { stdout } = await ctr("tasks", "ls", "-q");
    const ids = stdout.split("\n").filter(Boolean);
    // delete --force kills the task first; the shim then unmounts its rootfs and exits.
    await Promise.all(ids.map((id) => ctr("tasks", "delete", "--force", id)));
  }
  await byName("containerd")?.stop();
  await killPid(readPid(join(w, "containerd.pid")));
  // Shims of this containerd (they outlive it by design).
  for (const pid of listDir("/proc").filter((d) => /^\d+$/.test(d))) {
    const cmdline = safeRead(`/proc/${pid}/cmdline`).split("\0");
    if (sock && cmdline[0]?.includes("containerd-shim") && cmdline.includes(sock)) await killPid(Number(pid));
  }
  // Containers whose containerd was gone (a crashed run) are still in kubelet's cgroups.
  if (ownsKubepods) for (const pid of kubepodsProcesses()) await killPid(pid);
}

function kubepodsRoots(): string[] {
  return ["/sys/fs/cgroup", ...listDir("/sys/fs/cgroup").map((d) => join("/sys/fs/cgroup", d))].map((r) =>
    join(r, "kubepods"),
  );
}

/** Processes in the kubepods cgroup tree, in any hierarchy. */
function kubepodsProcesses(): number[] {
  const pids = new Set<number>();
  const walk = (dir: string) => {
    for (const line of safeRead(join(dir, "cgroup.procs")).split("\n")) if (line) pids.add(Number(line));
    for (const d of listDir(dir)) {
      const sub = join(dir, d);
      try {
        if (statSync(sub).isDirectory()) walk(sub);
      } catch {
        // gone
      }
    }
  };
  for (const root of kubepodsRoots()) if (existsSync(root)) walk(root);
  return [...pids];
}

async function killPid(pid: number | undefined): Promise<void> {
  if (!pid) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  for (let i = 0; i < 50; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Undoes what the node did to the host, whatever state a run was left in. */
async function cleanupHost(w: string, before: HostSnapshot, madeDummy: boolean): Promise<void> {
  // Mounts under the work dir (kubelet volumes, container rootfs, sandbox shm), deepest first.
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => unescapeMount(l.split(" ")[4] ?? ""))
    .filter((m) => m === w || m.startsWith(`${w}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run("umount", ["-l", m]).catch(() => undefined);
  // Network namespaces containerd created for sandboxes.
  for (const ns of listDir("/var/run/netns").filter((n) => !before.netns.includes(n))) {
    await run("umount", ["-l", join("/var/run/netns", ns)]).catch(() => undefined);
    await rm(join("/var/run/netns", ns), { force: true }).catch(() => undefined);
  }
  // Links: cni0, leftover veths, the dummy.
  for (const link of Object.keys(networkInterfaces()).filter((l) => !before.links.includes(l)))
    await run("ip", ["link", "delete", link]).catch(() => undefined);
  if (!before.links.includes(bridge)) await run("ip", ["link", "delete", bridge]).catch(() => undefined);
  if (madeDummy) await run("ip", ["link", "delete", dummyLink]).catch(() => undefined);
  // iptables chains kubelet (KUBE-*) and the CNI plugins (CNI-*) added, and the rules jumping to them.
  for (const cmd of ["iptables", "ip6tables"])
    for (const t of iptablesTables) {
      const old = before.chains[`${cmd} ${t}`] ?? [];
      const added = (await listChains(cmd, t)).filter((c) => !old.includes(c) && /^(KUBE-|CNI-)/.test(c));
      if (added.length === 0) continue;
      const rules = await run(cmd, ["-w", "-t", t, "-S"]).then(
        (r) => r.stdout.split("\n"),
        () => [],
      );
      for (const rule of rules) {
        const target = rule.match(/ -[jg] (\S+)/)?.[1];
        if (rule.startsWith("-A ") && target && added.includes(target))
          await run(cmd, ["-w", "-t", t, "-D", ...splitRule(rule.slice(3))]).catch(() => undefined);
      }
      for (const c of added) await run(cmd, ["-w", "-t", t, "-F", c]).catch(() => undefined);
      for (const c of added) await run(cmd, ["-w", "-t", t, "-X", c]).catch(() => undefined);
    }
  // Kernel tunables kubelet and the bridge plugin changed.
  for (const [k, v] of Object.entries(before.sysctls))
    if (v && safeRead(`/proc/sys/${k}`).trim() !== v)
      await writeFile(`/proc/sys/${k}`, v).catch(() => undefined);
  // cgroups kubelet made (kubepods under each v1 hierarchy, or under the v2 root).
  if (!before.kubepods) for (const root of kubepodsRoots()) removeEmptyTree(root);
  // /var/log/containers symlinks into this node's pod logs; /var/lib/cni if it was not there.
  for (const f of listDir("/var/log/containers")) {
    const p = join("/var/log/containers", f);
    const target = await readlink(p).catch(() => "");
    if (target.startsWith(`${w}/`)) await unlink(p).catch(() => undefined);
  }
  if (!before.containerLogs)
    await rm("/var/log/containers", { recursive: true, force: true }).catch(() => {});
  if (!before.netnsDir) removeEmptyTree("/var/run/netns");
  if (!before.varLibCni) await rm("/var/lib/cni", { recursive: true, force: true }).catch(() => {});
}

/** rmdir of a directory tree, deepest first; what is busy or not empty stays. */
function removeEmptyTree(dir: string): void {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(dir);
  } catch {
    return;
  }
  if (!st.isDirectory()) return;
  for (const d of readdirSync(dir, { withFileTypes: true }))
    if (d.isDirectory()) removeEmptyTree(join(dir, d.name));
  try {
    rmdirSync(dir);
  } catch {
    // busy (a process still in it) or gone
  }
}

/** A node left by a crashed run in this work dir: stop it and undo what it did. */
async function stopLeftovers(w: string): Promise<void> {
  const saved = safeRead(join(w, "host-before.json"));
  if (!saved) return;
  const sock = join(w, "containerd", "containerd.sock");
  for (const name of ["kube-scheduler", "kube-proxy", "kubelet"]) {
    const pid = readPid(join(w, `${name}.pid`));
    if (pid && safeRead(`/proc/${pid}/cmdline`).includes(name)) await killPid(pid);
  }
  const containerd = readPid(join(w, "containerd.pid"));
  const alive = containerd && safeRead(`/proc/${containerd}/cmdline`).includes("containerd");
  const before = JSON.parse(saved) as HostSnapshot;
  await stopNodeProcesses(w, sock, [], before.kubepods === false, Boolean(alive));
  if (alive) await killPid(containerd);
  await cleanupHost(w, before, existsSync(`/sys/class/net/${dummyLink}`));
  await rm(w, { recursive: true, force: true });
}

/** iptables -S prints rules with quoted comments; split them back into arguments. */
function splitRule(rule: string): string[] {
  const out: string[] = [];
  for (const m of rule.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g))
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? ""));
  return out;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function readPid(file: string): number | undefined {
  const n = Number(safeRead(file).trim());
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

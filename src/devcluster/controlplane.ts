import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { get as httpGet } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { clientCert, createPki, type Pki, writeKubeconfig } from "./certs.ts";
import { type LocalNode, type NodeOptions, nodeIp, startNode } from "./node.ts";
import { freePort, type Supervised, supervise, waitFor } from "./process.ts";

const run = promisify(execFile);

export interface ControlPlaneOptions {
  /** Directory with kube-apiserver, etcd and kube-controller-manager (else GHAT_K8S_BIN_DIR, else hack/k8s/build.sh). */
  binDir?: string;
  /** Work directory (certificates, data, logs, kubeconfigs); a temp dir when unset. */
  workDir?: string;
  /** Keep the work directory on stop (for debugging). */
  keep?: boolean;
  /** Give up waiting for readiness after this long. */
  timeoutMs?: number;
  /**
   * Also start a real node (containerd, kubelet, kube-scheduler; Linux and root only, see
   * src/devcluster/node.ts). Without it the control plane is exactly the three processes.
   */
  node?: boolean | NodeOptions;
}

export interface ControlPlane {
  kubeconfigPath: string;
  server: string;
  caPem: string;
  workDir: string;
  /** The node, when options.node asked for one. */
  node?: LocalNode | undefined;
  /** A kubeconfig for a non-admin user (client certificate: CN=name, O=groups). */
  createUser(name: string, groups: string[]): Promise<{ kubeconfigPath: string }>;
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  restartApiServer(): Promise<void>;
  stopEtcd(): Promise<void>;
  startEtcd(): Promise<void>;
  restartEtcd(): Promise<void>;
  /** Resident memory (KiB) of each process, from /proc. */
  memory(): Record<string, number>;
  stop(): Promise<void>;
}

const repoRoot = new URL("../../", import.meta.url).pathname;

const controlPlaneBinaries = ["kube-apiserver", "kube-controller-manager", "etcd"];
const nodeBinaries = ["kube-scheduler", "kubelet", "kube-proxy"];

/** Finds or builds the binaries (the control plane's three; `names` to ask for others too). */
export async function binaries(binDir?: string, names = controlPlaneBinaries): Promise<string> {
  const dir = binDir ?? process.env.GHAT_K8S_BIN_DIR;
  if (dir) return dir;
  const { stdout } = await run("bash", [join(repoRoot, "hack/k8s/build.sh"), ...names], {
    maxBuffer: 1 << 20,
  });
  return stdout.trim().split("\n").at(-1) ?? "";
}

/**
 * Starts etcd, kube-apiserver and kube-controller-manager on free loopback ports, after
 * controller-runtime's envtest, plus the garbage-collector, namespace and service-account
 * controllers so owned objects are collected and namespaces finish deleting.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const nodeOptions = options.node === true ? {} : options.node || undefined;
  if (nodeOptions) nodeOptions.progress?.("Building (or reusing) kube-scheduler and kubelet");
  const bin = await binaries(
    options.binDir,
    nodeOptions ? [...controlPlaneBinaries, ...nodeBinaries] : controlPlaneBinaries,
  );
  const workDir = options.workDir ?? (await mkdtemp(join(tmpdir(), "ghat-cp-")));
  await mkdir(workDir, { recursive: true });
  await killLeftovers(workDir);
  const timeoutMs = options.timeoutMs ?? 180_000;
  const pki = await createPki(join(workDir, "pki"));
  const [etcdClient, etcdPeer, apiPort] = await Promise.all([freePort(), freePort(), freePort()]);
  // With a node, Pods must reach the API server: through the `kubernetes` Service (kube-proxy
  // sends 10.0.0.1:443 to the address advertised here), so it binds and advertises the node's
  // address, and its serving certificate names that address too.
  const address = nodeOptions ? await nodeIp() : undefined;
  const host = address?.ip ?? "127.0.0.1";
  if (address) await serveAlsoAt(pki, address.ip);
  const server = `https://${host}:${apiPort}`;
  // The API server's client certificate towards kubelets (kubectl logs, exec, port-forward).
  const kubeletClient = nodeOptions
    ? await clientCert(pki.dir, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", [
        "system:masters",
      ])
    : undefined;
  const kubeconfigPath = join(workDir, "admin.kubeconfig");
  await writeKubeconfig(kubeconfigPath, server, pki.caCert, pki.adminCert, pki.adminKey, "admin");
  const log = (name: string) => join(workDir, `${name}.log`);
  const pid = (name: string) => join(workDir, `${name}.pid`);

  let etcd: Supervised | undefined;
  let apiserver: Supervised | undefined;
  let kcm: Supervised | undefined;

  const startEtcd = async () => {
    etcd = supervise(
      "etcd",
      join(bin, "etcd"),
      [
        "--data-dir",
        join(workDir, "etcd"),
        "--listen-client-urls",
        `http://127.0.0.1:${etcdClient}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${etcdClient}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${etcdPeer}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${etcdPeer}`,
        "--initial-cluster",
        `default=http://127.0.0.1:${etcdPeer}`,
        "--unsafe-no-fsync=true",
        "--log-level",
        "warn",
      ],
      log("etcd"),
      pid("etcd"),
    );
    await waitFor("etcd /health", timeoutMs, etcd, async () => {
      const body = await plainGet(`http://127.0.0.1:${etcdClient}/health`);
      return body.includes('"health":"true"');
    });
  };

  const startApiServer = async () => {
    apiserver = supervise(
      "kube-apiserver",
      join(bin, "kube-apiserver"),
      [
        // Node first: a kubelet (system:node:<name>) may read only what its pods use.
        ...apiServerArgs(pki, etcdClient, apiPort, workDir, kubeletClient ? "Node,RBAC" : "RBAC", host),
        ...(kubeletClient
          ? [
              // The `kubernetes` Service's endpoint is this server's advertised address, and
              // Pods get ServiceAccount token volumes as on any cluster.
              "--endpoint-reconciler-type=lease",
              "--enable-admission-plugins=ServiceAccount",
              // Reach the kubelet at the InternalIP it reports (there is no DNS for node names).
              "--kubelet-preferred-address-types=InternalIP",
              `--kubelet-client-certificate=${kubeletClient.cert}`,
              `--kubelet-client-key=${kubeletClient.key}`,
            ]
          : []),
      ],
      log("kube-apiserver"),
      pid("kube-apiserver"),
    );
    await waitFor(
      "kube-apiserver /readyz",
      timeoutMs,
      apiserver,
      async () => (await adminGet(pki, `${server}/readyz`)).status === 200,
    );
    await waitFor(
      "namespace default",
      timeoutMs,
      apiserver,
      async () => (await adminGet(pki, `${server}/api/v1/namespaces/default`)).status === 200,
    );
  };

  const startKcm = async () => {
    kcm = supervise(
      "kube-controller-manager",
      join(bin, "kube-controller-manager"),
      [
        `--kubeconfig=${kubeconfigPath}`,
        `--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,clusterrole-aggregation-controller${
          // With a node: the lifecycle controller lifts the not-ready taint kubelet registers
          // the Node with, so kube-scheduler places Pods on it; Deployments roll out, Services
          // get EndpointSlices (kube-proxy), PodDisruptionBudgets a status, and every namespace
          // the kube-root-ca.crt ConfigMap that ServiceAccount token volumes project.
          nodeOptions
            ? ",node-lifecycle-controller,deployment-controller,replicaset-controller,endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller,disruption-controller,root-ca-certificate-publisher-controller"
            : ""
        }`,
        "--leader-elect=false",
        "--secure-port=0",
        `--service-account-private-key-file=${pki.saKey}`,
        `--root-ca-file=${pki.caCert}`,
        "--use-service-account-credentials=false",
        "--concurrent-gc-syncs=5",
        "-v=1",
      ],
      log("kube-controller-manager"),
      pid("kube-controller-manager"),
    );
  };

  let node: LocalNode | undefined;
  try {
    await startEtcd();
    await startApiServer();
    await startKcm();
    if (nodeOptions)
      node = await startNode(
        {
          binDir: bin,
          workDir: join(workDir, "node"),
          pki,
          server,
          adminKubeconfig: kubeconfigPath,
          ...(address ? { address } : {}),
        },
        { timeoutMs, ...nodeOptions },
      );
  } catch (err) {
    await Promise.all([kcm, apiserver, etcd].map((p) => p?.stop()));
    throw err;
  }

  const caPem = readFileSync(pki.caCert, "utf8");
  let users = 0;
  return {
    kubeconfigPath,
    server,
    caPem,
    workDir,
    node,
    async createUser(name, groups) {
      const file = `user-${users++}`;
      const { cert, key } = await clientCert(pki.dir, file, name, groups);
      const path = join(workDir, `${file}.kubeconfig`);
      await writeKubeconfig(path, server, pki.caCert, cert, key, name);
      return { kubeconfigPath: path };
    },
    stopApiServer: async () => {
      await apiserver?.stop();
    },
    startApiServer,
    restartApiServer: async () => {
      await apiserver?.stop();
      await startApiServer();
    },
    stopEtcd: async () => {
      await etcd?.stop();
    },
    startEtcd,
    restartEtcd: async () => {
      await etcd?.stop();
      await startEtcd();
    },
    memory() {
      const out: Record<string, number> = { ...node?.memory() };
      for (const p of [etcd, apiserver, kcm]) {
        const childPid = p && readPid(pid(p.name));
        if (!childPid) continue;
        try {
          const m = readFileSync(`/proc/${childPid}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
          if (m?.[1] && p) out[p.name] = Number(m[1]);
        } catch {
          // process gone
        }
      }
      return out;
    },
    async stop() {
      await node?.stop();
      await kcm?.stop();
      await apiserver?.stop();
      await etcd?.stop();
      if (!options.keep && !options.workDir) await rm(workDir, { recursive: true, force: true });
    },
  };
}

function apiServerArgs(
  pki: Pki,
  etcdPort: number,
  apiPort: number,
  workDir: string,
  authorizationMode: string,
  host: string,
): string[] {
  return [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    `--cert-dir=${join(workDir, "apiserver-certs")}`,
    `--bind-address=${host}`,
    `--advertise-address=${host}`,
    `--secure-port=${apiPort}`,
    `--tls-cert-file=${pki.serverCert}`,
    `--tls-private-key-file=${pki.serverKey}`,
    `--client-ca-file=${pki.caCert}`,
    `--authorization-mode=${authorizationMode}`,
    "--service-account-issuer=https://kubernetes.default.svc",
    `--service-account-key-file=${pki.saPub}`,
    `--service-account-signing-key-file=${pki.saKey}`,
    "--service-cluster-ip-range=10.0.0.0/24",
    "--allow-privileged=true",
    ...(host === "127.0.0.1"
      ? ["--endpoint-reconciler-type=none", "--disable-admission-plugins=ServiceAccount"]
      : []),
    "--enable-priority-and-fairness=false",
    "--storage-media-type=application/json",
    "-v=1",
  ];
}

/** Signs the API server's serving certificate again with `ip` among its addresses. */
async function serveAlsoAt(pki: Pki, ip: string): Promise<void> {
  const ext = join(pki.dir, "server-node.ext");
  await writeFile(
    ext,
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1,IP:${ip}\n`,
  );
  const csr = join(pki.dir, "server-node.csr");
  await run("openssl", ["req", "-new", "-key", pki.serverKey, "-subj", "/CN=kube-apiserver", "-out", csr]);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    pki.caCert,
    "-CAkey",
    pki.caKey,
    "-CAcreateserial",
    "-days",
    "3650",
    "-extfile",
    ext,
    "-out",
    pki.serverCert,
  ]);
}

function plainGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (c) => {
        body += c;
      });
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
  });
}

function adminGet(pki: Pki, url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: "GET",
        ca: readFileSync(pki.caCert),
        cert: readFileSync(pki.adminCert),
        key: readFileSync(pki.adminKey),
        timeout: 3000,
      },
      (res) => {
        let body = "";
        res.on("data", (c) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Kills processes a crashed earlier run left in this work dir (pid files). */
async function killLeftovers(workDir: string): Promise<void> {
  for (const name of ["kube-controller-manager", "kube-apiserver", "etcd"]) {
    const p = readPid(join(workDir, `${name}.pid`));
    if (!p) continue;
    try {
      const cmdline = await readFile(`/proc/${p}/cmdline`, "utf8");
      if (cmdline.includes(name)) process.kill(p, "SIGKILL");
    } catch {
      // not running
    }
  }
}

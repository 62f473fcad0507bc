import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { importImage } from "../../src/devcluster/node.ts";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { type Simulator, startSimulator } from "../../src/sim/simulator.ts";
import { kubeconfigPath, kubectl, newNamespace } from "../support/cluster.ts";

const run = promisify(execFile);
const repo = new URL("../../", import.meta.url).pathname;

/**
 * ghat as users run it: the image built from the Dockerfile (hack/image/build.sh), imported
 * into the node's containerd, installed with `helm install charts/ghat` (default values but
 * the image and pullPolicy), two Pods on the real node talking to the API server through the
 * `kubernetes` Service (kube-proxy) with their ServiceAccount, and to the GitHub simulator on
 * the node's address.
 */

/** Measurements go to stderr (vitest shows them with the file's output). */
function report(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function ok(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const release = "ghat";
const appId = 4242;
const owner = "acme";
const poll = { timeout: 180_000, interval: 500 };

interface PodInfo {
  name: string;
  ready: boolean;
  phase: string;
  hash: string;
  deleting: boolean;
  restarts: number;
  startTime: string;
  readySince: string;
  containerId: string;
}

describe("the chart on a real node, from the image", () => {
  const work = mkdtempSync(join(tmpdir(), "ghat-chart-"));
  const keys = generateAppKeyPair();
  let helmBin = "";
  let sim: Simulator;
  let ns = "";
  let appNs = "";
  let installed = false;

  const helm = async (...args: string[]) => {
    const r = await run(helmBin, ["--kubeconfig", kubeconfigPath(), "-n", ns, ...args], {
      maxBuffer: 64 << 20,
      timeout: 300_000,
    });
    return r.stdout;
  };
  const imageValues = [
    "--set",
    "image.registry=ghat.local",
    "--set",
    "image.repository=ghat",
    "--set",
    "image.tag=dev",
    "--set",
    "image.pullPolicy=Never",
  ];

  async function pods(): Promise<PodInfo[]> {
    const out = await ok([
      "-n",
      ns,
      "get",
      "pods",
      "-l",
      `app.kubernetes.io/instance=${release}`,
      "-o",
      "json",
    ]);
    const list = JSON.parse(out).items as {
      metadata: { name: string; labels: Record<string, string>; deletionTimestamp?: string };
      status: {
        phase: string;
        startTime?: string;
        conditions?: { type: string; status: string; lastTransitionTime: string }[];
        containerStatuses?: { restartCount: number; containerID?: string }[];
      };
    }[];
    return list.map((p) => {
      const readyCond = p.status.conditions?.find((c) => c.type === "Ready");
      return {
        name: p.metadata.name,
        ready: readyCond?.status === "True",
        phase: p.status.phase,
        hash: p.metadata.labels["pod-template-hash"] ?? "",
        deleting: Boolean(p.metadata.deletionTimestamp),
        restarts: p.status.containerStatuses?.[0]?.restartCount ?? 0,
        startTime: p.status.startTime ?? "",
        readySince: readyCond?.lastTransitionTime ?? "",
        containerId: (p.status.containerStatuses?.[0]?.containerID ?? "").replace(/^containerd:\/\//, ""),
      };
    });
  }
  const readyPods = async () => (await pods()).filter((p) => p.ready && !p.deleting && p.phase === "Running");

  async function holder(): Promise<string> {
    const r = await kubectl([
      "-n",
      ns,
      "get",
      "lease",
      `${release}-leader`,
      "-o",
      "jsonpath={.spec.holderIdentity}",
    ]);
    return r.code === 0 ? r.stdout : "";
  }
  /** The Pod whose identity (hostname_pid_random) holds the Lease. */
  const leaderPod = async () => {
    const h = await holder();
    return (await readyPods()).find((p) => h.startsWith(`${p.name}_`))?.name ?? "";
  };

  /** Tokens the simulator minted with exactly this one permission. */
  const mints = (permission: string) =>
    [...sim.state.tokens.values()].filter(
      (t) => Object.keys(t.permissions).length === 1 && t.permissions[permission] === "read",
    ).length;

  const tokenReady = async (name: string) =>
    (
      await kubectl([
        "-n",
        appNs,
        "get",
        "githubapptoken",
        name,
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ])
    ).stdout;

  function tokenYaml(name: string, permission: string): string {
    return stringify({
      apiVersion: "ghat.dev/v1alpha1",
      kind: "GitHubAppToken",
      metadata: { name, namespace: appNs },
      spec: {
        appRef: { name: "app" },
        installation: { owner },
        permissions: { [permission]: "read" },
        secrets: [{ name: `${name}-token` }],
      },
    });
  }

  beforeAll(async () => {
    // The image, as hack/image/build.sh builds it from the Dockerfile (buildah; warm: ~30 s).
    const tarball = join(work, "ghat.tar");
    const built = Date.now();
    const { stderr } = await run("bash", [join(repo, "hack/image/build.sh"), tarball], {
      cwd: repo,
      maxBuffer: 64 << 20,
      timeout: 20 * 60_000,
    });
    const size = statSync(tarball).size;
    const gz = stderr.match(/; ([\d.]+ MiB) gzipped/)?.[1] ?? "?";
    report(
      `chart: image built in ${Date.now() - built} ms: ${(size / 1048576).toFixed(1)} MiB docker-save tar, ${gz} gzipped`,
    );
    const imported = Date.now();
    await importImage(inject("containerdAddress"), tarball);
    report(`chart: image imported into the node's containerd in ${Date.now() - imported} ms`);
    rmSync(tarball, { force: true });
    helmBin = (await run("bash", [join(repo, "hack/helm/build.sh")], { timeout: 20 * 60_000 })).stdout
      .trim()
      .split("\n")
      .at(-1) as string;

    // GitHub on the node's address, where Pods reach it.
    sim = await startSimulator({
      host: inject("nodeIp"),
      seed: {
        apps: [{ id: appId, clientId: "Iv23liChart", slug: "chart", owner, publicKeys: [keys.publicKeyPem] }],
        installations: [
          {
            id: 9001,
            appId,
            account: { login: owner, type: "Organization" },
            permissions: { contents: "read", metadata: "read", issues: "read", pull_requests: "read" },
          },
        ],
        repositories: [{ id: 501, owner, name: "app", private: true }],
      },
    });
    ns = await newNamespace("ghat-chart");
    appNs = await newNamespace("chart-app");
    // CRDs a previous file applied with kubectl: let Helm adopt them (its documented way).
    for (const crd of ["githubapptokens", "githubapps", "clustergithubapps"]) {
      const name = `crd/${crd}.ghat.dev`;
      if ((await kubectl(["get", name])).code !== 0) continue;
      await ok(["label", "--overwrite", name, "app.kubernetes.io/managed-by=Helm"]);
      await ok([
        "annotate",
        "--overwrite",
        name,
        `meta.helm.sh/release-name=${release}`,
        `meta.helm.sh/release-namespace=${ns}`,
      ]);
    }
  }, 25 * 60_000);

  afterAll(async () => {
    if (installed) await helm("uninstall", release, "--wait").catch(() => undefined);
    await sim?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("installs two replicas that become Running and Ready with the chart's security context", async () => {
    const started = Date.now();
    await helm("install", release, join(repo, "charts/ghat"), ...imageValues);
    installed = true;
    await expect.poll(async () => (await readyPods()).length, poll).toBe(2);
    const readyMs = Date.now() - started;
    const list = await readyPods();
    const perPod = list.map((p) => Date.parse(p.readySince) - Date.parse(p.startTime));
    report(
      `chart: helm install -> 2 Pods Ready in ${readyMs} ms; per Pod start -> Ready ${perPod.join(", ")} ms (API timestamps, 1 s resolution)`,
    );

    const pod = JSON.parse(await ok(["-n", ns, "get", "pod", list[0]?.name ?? "", "-o", "json"]));
    const c = pod.spec.containers[0];
    expect(c.image).toBe("ghat.local/ghat:dev");
    expect(c.imagePullPolicy).toBe("Never");
    expect(pod.spec.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      privileged: false,
      capabilities: { drop: ["ALL"] },
    });
    // In-cluster: no kubeconfig, the ServiceAccount's projected token.
    expect(c.args.join(" ")).not.toContain("kubeconfig");
    expect(pod.spec.serviceAccountName).toBe(release);
    expect(JSON.stringify(pod.spec.volumes ?? [])).toContain("serviceAccountToken");
    // Probes configured, passing (Ready), and the container never restarted (liveness).
    expect(c.readinessProbe.httpGet.path).toBe("/readyz");
    expect(c.livenessProbe.httpGet.path).toBe("/healthz");
    expect(list.map((p) => p.restarts)).toEqual([0, 0]);

    // What the kernel says about the container's process, seen from the host.
    const containerId = list[0]?.containerId ?? "";
    const { stdout: tasks } = await run("ctr", [
      "--address",
      inject("containerdAddress"),
      "-n",
      "k8s.io",
      "tasks",
      "ls",
    ]);
    const pid = tasks
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .find((f) => f[0] === containerId)?.[1];
    expect(pid, `task ${containerId} in\n${tasks}`).toMatch(/^\d+$/);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (k: string) =>
      status
        .match(new RegExp(`^${k}:\\s*(.*)$`, "m"))?.[1]
        ?.trim()
        .split(/\s+/);
    expect(field("Uid")).toEqual(["65532", "65532", "65532", "65532"]);
    expect(field("Gid")).toEqual(["65532", "65532", "65532", "65532"]);
    for (const cap of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"])
      expect(field(cap)?.[0], cap).toBe("0000000000000000");
    expect(field("NoNewPrivs")?.[0]).toBe("1");
    expect(field("Seccomp")?.[0]).toBe("2");
    const rootMount = readFileSync(`/proc/${pid}/mountinfo`, "utf8")
      .split("\n")
      .find((l) => l.split(" ")[4] === "/");
    expect(rootMount?.split(" ")[5]?.split(",")).toContain("ro");
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    expect(cmdline.slice(0, 4)).toEqual(["/nodejs/bin/node", "--max-opt=2", "--expose-gc", "dist/ghat.mjs"]);
  });

  it("mints with its ServiceAccount and exactly the chart's RBAC", async () => {
    await ok([
      "-n",
      appNs,
      "create",
      "secret",
      "generic",
      "app-key",
      `--from-literal=private-key.pem=${keys.privateKeyPkcs1Pem}`,
    ]);
    await ok(
      ["apply", "-f", "-"],
      stringify({
        apiVersion: "ghat.dev/v1alpha1",
        kind: "GitHubApp",
        metadata: { name: "app", namespace: appNs },
        spec: { appId, privateKeySecretRef: { name: "app-key" }, baseUrl: sim.url },
      }),
    );
    await ok(["apply", "-f", "-"], tokenYaml("t", "issues"));
    await expect.poll(() => tokenReady("t"), poll).toBe("True");
    const token = Buffer.from(
      await ok(["-n", appNs, "get", "secret", "t-token", "-o", "jsonpath={.data.token}"]),
      "base64",
    ).toString();
    expect(sim.checkToken(token).live).toBe(true);

    const sa = `system:serviceaccount:${ns}:${release}`;
    const can = async (...args: string[]) =>
      (await kubectl(["auth", "can-i", ...args, "--as", sa])).stdout.trim();
    // What the chart grants (cluster-wide by default: watchNamespaces is empty)…
    expect(await can("patch", "secrets", "-n", appNs)).toBe("yes");
    expect(await can("patch", "githubapptokens.ghat.dev/status", "-n", appNs)).toBe("yes");
    expect(await can("update", `leases.coordination.k8s.io/${release}-leader`, "-n", ns)).toBe("yes");
    // … and nothing more.
    expect(await can("create", "deployments.apps", "-n", appNs)).toBe("no");
    expect(await can("list", "deployments.apps", "-n", appNs)).toBe("no"); // workloads.enabled=false
    expect(await can("update", "leases.coordination.k8s.io/other", "-n", ns)).toBe("no");
    expect(await can("update", `leases.coordination.k8s.io/${release}-leader`, "-n", appNs)).toBe("no");
    expect(await can("create", "pods", "-n", appNs)).toBe("no");
    expect(await can("get", "nodes")).toBe("no");
    expect(await can("create", "clusterrolebindings")).toBe("no");
    expect(await can("delete", "namespaces")).toBe("no");
    expect(await can("update", "secrets", "-n", appNs)).toBe("no");
  });

  it("elects one leader; when its Pod is deleted another takes over, serves tokens and mints nothing twice", async () => {
    await expect.poll(leaderPod, poll).not.toBe("");
    const leader = await leaderPod();
    const other = (await readyPods()).find((p) => p.name !== leader)?.name ?? "";
    expect(other).not.toBe("");
    const minted = mints("issues");
    expect(minted).toBe(1);
    const before = await ok(["-n", appNs, "get", "secret", "t-token", "-o", "jsonpath={.data.token}"]);

    const deleted = Date.now();
    await ok(["-n", ns, "delete", "pod", leader, "--wait=false"]);
    // The leader gives the Lease up on SIGTERM; the standby takes it at its next attempt
    // (within the retry period, 15 s), unless the ReplicaSet's replacement campaigns first.
    await expect
      .poll(
        async () => {
          const h = await holder();
          return h !== "" && !h.startsWith(`${leader}_`);
        },
        { timeout: 120_000, interval: 100 },
      )
      .toBe(true);
    const takeoverMs = Date.now() - deleted;
    const successor = (await holder()).startsWith(`${other}_`) ? "the standby" : "the replacement Pod";
    report(`chart: leader Pod deleted -> ${successor} holds the Lease in ${takeoverMs} ms`);

    // The new leader serves: a new token becomes Ready…
    await ok(["apply", "-f", "-"], tokenYaml("t2", "pull_requests"));
    await expect.poll(() => tokenReady("t2"), poll).toBe("True");
    expect(mints("pull_requests")).toBe(1);
    // … and the existing one is neither minted again nor changed.
    expect(await tokenReady("t")).toBe("True");
    expect(await ok(["-n", appNs, "get", "secret", "t-token", "-o", "jsonpath={.data.token}"])).toBe(before);
    expect(mints("issues")).toBe(minted);
    // The ReplicaSet replaced the deleted Pod.
    await expect.poll(async () => (await readyPods()).length, poll).toBe(2);
    expect(mints("issues")).toBe(minted);
  });

  it("rolls the Pods on helm upgrade with a changed value", async () => {
    const oldHashes = new Set((await pods()).map((p) => p.hash));
    const rsBefore = (
      await ok(["-n", ns, "get", "rs", "-l", `app.kubernetes.io/instance=${release}`, "-o", "name"])
    )
      .split("\n")
      .filter(Boolean);
    const upgraded = Date.now();
    await helm("upgrade", release, join(repo, "charts/ghat"), ...imageValues, "--set", "logLevel=debug");
    await expect
      .poll(async () => {
        const all = await pods();
        return all.length === 2 && all.every((p) => p.ready && !oldHashes.has(p.hash) && !p.deleting);
      }, poll)
      .toBe(true);
    report(`chart: helm upgrade -> 2 new Pods Ready, old ones gone in ${Date.now() - upgraded} ms`);
    const rsAfter = (
      await ok(["-n", ns, "get", "rs", "-l", `app.kubernetes.io/instance=${release}`, "-o", "name"])
    )
      .split("\n")
      .filter(Boolean);
    const fresh = rsAfter.filter((r) => !rsBefore.includes(r));
    expect(fresh).toHaveLength(1);
    const args = await ok([
      "-n",
      ns,
      "get",
      "deployment",
      release,
      "-o",
      "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    expect(args).toContain("--log-level=debug");
    await expect.poll(leaderPod, poll).not.toBe("");
    expect(mints("issues")).toBe(1);
  });

  it("serves metrics through its Service (ClusterIP, through kube-proxy)", async () => {
    const ip = await ok([
      "-n",
      ns,
      "get",
      "service",
      `${release}-metrics`,
      "-o",
      "jsonpath={.spec.clusterIP}",
    ]);
    expect(ip).toMatch(/^10\.0\.0\.\d+$/);
    await ok(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "scraper", namespace: appNs },
        spec: {
          terminationGracePeriodSeconds: 0,
          containers: [
            {
              name: "main",
              image: inject("busyboxImage"),
              imagePullPolicy: "Never",
              command: ["sleep", "3600"],
            },
          ],
        },
      }),
    );
    await ok(["-n", appNs, "wait", "--for=condition=Ready", "pod/scraper", "--timeout=120s"]);
    let body = "";
    await expect
      .poll(
        async () => {
          // busybox-static's wget crashes in its (static glibc) resolver: HTTP/1.0 by nc.
          const r = await kubectl([
            "-n",
            appNs,
            "exec",
            "scraper",
            "--",
            "sh",
            "-c",
            `printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${ip} 8080`,
          ]);
          body = r.stdout;
          return body.includes("ghat_build_info");
        },
        { timeout: 60_000, interval: 1000 },
      )
      .toBe(true);
    expect(body).toMatch(/^# (HELP|TYPE) /m);
    await ok(["-n", appNs, "delete", "pod", "scraper", "--wait=false"]);
  });

  it("helm uninstall removes everything it installed and keeps the CRDs", async () => {
    // Tokens first, while ghat runs: their finalizers revoke and let go.
    await ok(["-n", appNs, "delete", "githubapptokens", "--all", "--timeout=120s"]);
    const manifest = await helm("get", "manifest", release);
    const objects = parseAllDocuments(manifest)
      .map((d) => d.toJS() as { kind?: string; metadata?: { name: string; namespace?: string } } | null)
      .filter((o): o is { kind: string; metadata: { name: string; namespace?: string } } => Boolean(o?.kind));
    const kinds = new Set(objects.map((o) => o.kind));
    for (const k of [
      "Deployment",
      "ServiceAccount",
      "ClusterRole",
      "ClusterRoleBinding",
      "Role",
      "RoleBinding",
      "Service",
      "PodDisruptionBudget",
      "CustomResourceDefinition",
    ])
      expect(kinds, k).toContain(k);
    await helm("uninstall", release, "--wait", "--timeout", "3m");
    installed = false;
    const exists = async (o: { kind: string; metadata: { name: string; namespace?: string } }) =>
      (
        await kubectl([
          "get",
          o.kind.toLowerCase(),
          o.metadata.name,
          ...(clusterScoped.has(o.kind) ? [] : ["-n", o.metadata.namespace ?? ns]),
          "-o",
          "name",
        ])
      ).code === 0;
    const left = async () => {
      const out: string[] = [];
      for (const o of objects)
        if (o.kind !== "CustomResourceDefinition" && (await exists(o)))
          out.push(`${o.kind}/${o.metadata.name}`);
      return out;
    };
    await expect.poll(left, poll).toEqual([]);
    await expect.poll(async () => (await pods()).length, poll).toBe(0);
    for (const o of objects.filter((x) => x.kind === "CustomResourceDefinition"))
      expect(await exists(o), `${o.metadata.name} kept`).toBe(true);
  });
});

const clusterScoped = new Set(["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"]);

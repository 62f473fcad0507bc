import { execFile, execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { kubectl, newNamespace } from "../support/cluster.ts";

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;
const chartDir = `${root}charts/ghat`;
const fixtures = `${root}test/fixtures/chart`;
/** Every conventional key set (lint, render, dry-run). */
const allValues = `${fixtures}/all-values.yaml`;
let helm = "";
/** Helm's cache, config and data for this file only (dependency build writes there). */
const helmHome = mkdtempSync(join(tmpdir(), "ghat-chart-test-"));
const helmEnv = {
  ...process.env,
  HELM_CACHE_HOME: `${helmHome}/cache`,
  HELM_CONFIG_HOME: `${helmHome}/config`,
  HELM_DATA_HOME: `${helmHome}/data`,
};

type Doc = Record<string, unknown> & {
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
};
interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs?: string[];
}
interface Container {
  image: string;
  args: string[];
  env?: { name: string; value?: string }[];
  volumeMounts?: { name: string; mountPath: string }[];
  securityContext: object;
  livenessProbe: object;
  readinessProbe: object;
  resources: object;
}
interface PodSpec {
  securityContext: object;
  serviceAccountName: string;
  imagePullSecrets?: { name: string }[];
  priorityClassName?: string;
  volumes?: { name: string }[];
  containers: Container[];
}
interface Deployment {
  spec: { replicas: number; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
}

async function helmRun(args: string[]): Promise<string> {
  const { stdout } = await run(helm, args, { maxBuffer: 16 << 20, env: helmEnv });
  return stdout;
}

const parseDocs = (text: string): Doc[] =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);

interface RenderOptions {
  release?: string;
  values?: string[];
  chart?: string;
}

async function render(namespace: string, set: string[] = [], o: RenderOptions = {}): Promise<Doc[]> {
  const args = [
    "template",
    o.release ?? "ghat",
    o.chart ?? chartDir,
    "--namespace",
    namespace,
    "--kube-version",
    "1.34.4",
    "--include-crds",
  ];
  for (const f of o.values ?? []) args.push("--values", f);
  for (const s of set) args.push("--set", s);
  return parseDocs(await helmRun(args));
}

/** Server-side dry-run apply: the API server validates every object, CRDs included, and stores nothing. */
const dryRun = (docs: Record<string, unknown>[]) =>
  kubectl(
    [
      "apply",
      "--server-side",
      "--force-conflicts",
      "--field-manager=chart-test",
      "--dry-run=server",
      "-f",
      "-",
    ],
    {
      input: docs.map((d) => JSON.stringify(d)).join("\n"),
    },
  );

async function expectAccepted(docs: Record<string, unknown>[]) {
  const r = await dryRun(docs);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
}

const kinds = (docs: Doc[]) => docs.map((d) => String(d.kind)).sort();
const deploymentOf = (docs: Doc[]) => docs.find((d) => d.kind === "Deployment") as unknown as Deployment;
const containerOf = (docs: Doc[]) => deploymentOf(docs).spec.template.spec.containers[0] as Container;
const rulesOf = (d: Doc | undefined) => ((d as { rules?: Rule[] } | undefined)?.rules ?? []) as Rule[];
const named = (docs: Doc[], kind: string, name: string, namespace?: string) =>
  docs.find(
    (d) =>
      d.kind === kind &&
      d.metadata.name === name &&
      (namespace === undefined || d.metadata.namespace === namespace),
  );
const leaseRule = (docs: Doc[]) =>
  rulesOf(docs.find((d) => d.kind === "Role" && d.metadata.name.endsWith("-leader-election"))).find(
    (r) => r.resourceNames,
  );
const secretVerbs = ["get", "list", "watch", "create", "patch", "delete"];

/** Minimal stand-ins for the Prometheus Operator CRDs, so the optional objects can be dry-run. */
const monitoringCrds = ["ServiceMonitor", "PrometheusRule"].map((kind) => ({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: `${kind.toLowerCase()}s.monitoring.coreos.com` },
  spec: {
    group: "monitoring.coreos.com",
    scope: "Namespaced",
    names: { kind, plural: `${kind.toLowerCase()}s`, singular: kind.toLowerCase(), listKind: `${kind}List` },
    versions: [
      {
        name: "v1",
        served: true,
        storage: true,
        schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
      },
    ],
  },
}));

describe("the Helm chart", () => {
  beforeAll(async () => {
    helm =
      execFileSync("bash", [`${root}hack/helm/build.sh`], { encoding: "utf8" })
        .trim()
        .split("\n")
        .at(-1) ?? "";
    await kubectl(["apply", "-f", "-"], { input: monitoringCrds.map((c) => JSON.stringify(c)).join("\n") });
    await kubectl([
      "wait",
      "--for=condition=Established",
      "crd/servicemonitors.monitoring.coreos.com",
      "crd/prometheusrules.monitoring.coreos.com",
    ]);
  });
  afterAll(() => rmSync(helmHome, { recursive: true, force: true }));

  it("lints cleanly in strict mode, with defaults and with every conventional key set", async () => {
    expect(await helmRun(["lint", "--strict", chartDir])).toContain("0 chart(s) failed");
    expect(await helmRun(["lint", "--strict", chartDir, "--values", allValues])).toContain(
      "0 chart(s) failed",
    );
    expect(
      await helmRun([
        "lint",
        "--strict",
        chartDir,
        "--set",
        "watchNamespaces={a,b}",
        "--set",
        "rbac.create=false",
        "--set",
        "crds.enabled=false",
      ]),
    ).toContain("0 chart(s) failed");
  });

  it("ships the CRDs as templates rendered from crds/, kept on uninstall, behind crds.enabled", async () => {
    // One copy in the chart: a crds/ directory would be installed first and collide with the templates.
    expect(existsSync(`${chartDir}/crds`)).toBe(false);
    const files = readdirSync(`${root}crds`).sort();
    expect(readdirSync(`${chartDir}/templates/crds`).sort()).toEqual(files);
    const docs = await render("x");
    const crds = docs.filter((d) => d.kind === "CustomResourceDefinition");
    expect(crds.map((d) => d.metadata.name).sort()).toEqual(files.map((f) => f.replace(/\.yaml$/, "")));
    for (const f of files) {
      const source = parse(readFileSync(`${root}crds/${f}`, "utf8")) as Doc & { spec: unknown };
      const rendered = named(crds, "CustomResourceDefinition", source.metadata.name) as Doc & {
        spec: unknown;
      };
      // The same schema, descriptions with "{{ token }}" included.
      expect(rendered.spec).toEqual(source.spec);
      expect(rendered.apiVersion).toBe(source.apiVersion);
      expect(rendered.metadata.labels).toMatchObject(source.metadata.labels ?? {});
      expect(rendered.metadata.labels).toMatchObject({ "app.kubernetes.io/instance": "ghat" });
      expect(rendered.metadata.annotations).toEqual({ "helm.sh/resource-policy": "keep" });
    }
    expect(JSON.stringify(crds)).toContain("{{ token }}");
    const unkept = (await render("x", ["crds.keep=false"])).filter(
      (d) => d.kind === "CustomResourceDefinition",
    );
    expect(unkept).toHaveLength(3);
    for (const d of unkept) expect(d.metadata.annotations).toBeUndefined();
    expect(kinds(await render("x", ["crds.enabled=false"]))).not.toContain("CustomResourceDefinition");
  });

  it("renders defaults that the API server accepts, with a hardened pod", async () => {
    const ns = await newNamespace("chart");
    const docs = await render(ns);
    expect(kinds(docs)).toEqual([
      "ClusterRole",
      "ClusterRole",
      "ClusterRole",
      "ClusterRoleBinding",
      "CustomResourceDefinition",
      "CustomResourceDefinition",
      "CustomResourceDefinition",
      "Deployment",
      "PodDisruptionBudget",
      "Role",
      "RoleBinding",
      "Service",
      "ServiceAccount",
    ]);
    await expectAccepted(docs);
    const deployment = deploymentOf(docs);
    expect(deployment.spec.replicas).toBe(2);
    const pod = deployment.spec.template.spec;
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: "RuntimeDefault" },
    });
    const c = pod.containers[0];
    expect(c?.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      privileged: false,
      capabilities: { drop: ["ALL"] },
    });
    expect(c?.image).toBe("ghcr.io/ghat-dev/ghat:0.1.0");
    expect(c?.args).toContain("--leader-elect=true");
    expect(c?.args).toContain(`--operator-namespace=${ns}`);
    expect(c?.livenessProbe).toMatchObject({ httpGet: { path: "/healthz" } });
    expect(c?.readinessProbe).toMatchObject({ httpGet: { path: "/readyz" } });
    expect((named(docs, "PodDisruptionBudget", "ghat") as unknown as { spec: object }).spec).toMatchObject({
      minAvailable: 1,
    });
    // Cluster-wide mode: Secret rights in the ClusterRole.
    expect(rulesOf(named(docs, "ClusterRole", "ghat"))).toContainEqual({
      apiGroups: [""],
      resources: ["secrets"],
      verbs: secretVerbs,
    });
  });

  it("names the Lease after the release, and grants get/update on that Lease alone", async () => {
    const ns = await newNamespace("chart");
    for (const [release, set, fullname] of [
      ["ghat", [], "ghat"],
      ["one", [], "one-ghat"],
      ["two", [], "two-ghat"],
      ["three", ["fullnameOverride=tokens"], "tokens"],
    ] as const) {
      const docs = await render(ns, [...set], { release });
      expect(containerOf(docs).args).toContain(`--leader-election-id=${fullname}-leader`);
      expect(leaseRule(docs)).toEqual({
        apiGroups: ["coordination.k8s.io"],
        resources: ["leases"],
        resourceNames: [`${fullname}-leader`],
        verbs: ["get", "update"],
      });
      await expectAccepted(docs);
    }
    // No flag and no Role without leader election.
    const off = await render(ns, ["leaderElection.enabled=false"]);
    expect(containerOf(off).args.filter((a) => a.startsWith("--leader-election-id"))).toEqual([]);
    expect(kinds(off)).not.toContain("Role");
  });

  it("renders non-default values that the API server accepts", async () => {
    const ns = await newNamespace("chart");
    const [a, b] = [await newNamespace("team-a"), await newNamespace("team-b")];
    const docs = await render(ns, [
      "replicaCount=1",
      "leaderElection.enabled=false",
      `watchNamespaces={${a},${b}}`,
      "metrics.serviceMonitor.enabled=true",
      "metrics.prometheusRule.enabled=true",
      "serviceAccount.name=custom",
      "logLevel=debug",
    ]);
    expect(kinds(docs)).toContain("ServiceMonitor");
    expect(kinds(docs)).toContain("PrometheusRule");
    expect(kinds(docs)).not.toContain("PodDisruptionBudget");
    expect(docs.filter((d) => d.metadata.name.endsWith("-leader-election"))).toEqual([]);
    await expectAccepted(docs);
    const args = containerOf(docs).args;
    expect(args).toContain(`--namespaces=${a},${b}`);
    expect(args).toContain("--leader-elect=false");
    expect(deploymentOf(docs).spec.template.spec.serviceAccountName).toBe("custom");
  });

  it("renders the keyless settings: a Vault-audience token, PKCS#11 modules, the ambient-signer switch", async () => {
    const ns = await newNamespace("chart");
    const docs = await render(ns, [
      "keyless.vaultAudience=vault",
      "keyless.pkcs11Modules={/usr/lib/softhsm/libsofthsm2.so}",
      "keyless.namespacedAmbientSigners=true",
      "extraVolumes[0].name=scratch",
      "extraVolumes[0].emptyDir.medium=Memory",
      "extraVolumeMounts[0].name=scratch",
      "extraVolumeMounts[0].mountPath=/scratch",
    ]);
    await expectAccepted(docs);
    const args = containerOf(docs).args;
    expect(args).toContain("--pkcs11-module=/usr/lib/softhsm/libsofthsm2.so");
    expect(args).toContain("--namespaced-ambient-signers");
    expect(args).toContain("--service-account-token-file=/var/run/secrets/ghat.dev/vault/token");
    const pod = deploymentOf(docs).spec.template.spec as unknown as {
      volumes: { name: string; projected?: { sources: { serviceAccountToken?: { audience: string } }[] } }[];
      containers: { volumeMounts: { name: string; mountPath: string }[] }[];
    };
    expect(pod.volumes.map((v) => v.name)).toEqual(["vault-token", "scratch"]);
    expect(pod.volumes[0]?.projected?.sources[0]?.serviceAccountToken?.audience).toBe("vault");
    expect(pod.containers[0]?.volumeMounts.map((m) => m.mountPath)).toEqual([
      "/var/run/secrets/ghat.dev/vault",
      "/scratch",
    ]);
    // Events name the Pod that recorded them.
    expect(containerOf(docs).env).toContainEqual({
      name: "POD_NAME",
      valueFrom: { fieldRef: { fieldPath: "metadata.name" } },
    });
    // Off by default: no flag, no extra volume.
    const defaults = containerOf(await render(ns)).args;
    expect(defaults.filter((a) => /pkcs11|ambient|token-file/.test(a))).toEqual([]);
  });

  it("renders every conventional key, and the API server accepts it", async () => {
    const ns = await newNamespace("chart");
    const docs = await render(ns, [], { release: "r", values: [allValues] });
    await expectAccepted(docs);
    const d = deploymentOf(docs);
    const pod = d.spec.template.spec;
    const c = containerOf(docs);
    expect(named(docs, "Deployment", "ghat-all")).toBeDefined();
    expect(d.spec.replicas).toBe(3);
    expect(c.image).toBe(
      "mirror.example.com/ghat-dev/ghat:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    );
    expect(pod.imagePullSecrets).toEqual([{ name: "regcred" }, { name: "global-regcred" }]);
    expect(pod.priorityClassName).toBe("system-cluster-critical");
    expect(pod.serviceAccountName).toBe("ghat-all-sa");
    expect(pod).toMatchObject({
      nodeSelector: { "kubernetes.io/os": "linux" },
      tolerations: [{ key: "dedicated" }],
      affinity: { podAntiAffinity: {} },
      topologySpreadConstraints: [{ topologyKey: "topology.kubernetes.io/zone" }],
    });
    expect(pod.volumes).toEqual([{ name: "ca", configMap: { name: "corporate-ca", optional: true } }]);
    expect(c.volumeMounts).toEqual([{ name: "ca", mountPath: "/etc/ssl/corporate", readOnly: true }]);
    expect(c.env).toContainEqual({ name: "HTTPS_PROXY", value: "http://proxy.example.com:3128" });
    // extraArgs come last, so that they win over the chart's own flags.
    expect(c.args.slice(-2)).toEqual(["--github-timeout=20s", "--log-format=json"]);
    expect(c.args).toContain("--leader-election-id=ghat-all-leader");
    expect(d.spec.template.metadata.labels).toMatchObject({
      "app.kubernetes.io/name": "tokens",
      "example.com/pod": "yes",
      "cost-center": "42",
      team: "platform",
    });
    expect(
      (d.spec.template as unknown as { metadata: { annotations: object } }).metadata.annotations,
    ).toEqual({ "example.com/scrape": "true" });
    for (const doc of docs)
      expect(doc.metadata.labels, `${doc.kind} ${doc.metadata.name}`).toMatchObject({
        "cost-center": "42",
        team: "platform",
        "app.kubernetes.io/instance": "r",
      });
    expect(named(docs, "ServiceAccount", "ghat-all-sa")?.metadata.annotations).toEqual({
      "example.com/role": "ghat",
    });
    expect((named(docs, "PodDisruptionBudget", "ghat-all") as unknown as { spec: object }).spec).toEqual({
      maxUnavailable: 1,
      selector: { matchLabels: { "app.kubernetes.io/name": "tokens", "app.kubernetes.io/instance": "r" } },
    });
    expect(named(docs, "ServiceMonitor", "ghat-all")?.metadata.labels).toMatchObject({
      release: "prometheus",
    });
    for (const crd of docs.filter((x) => x.kind === "CustomResourceDefinition"))
      expect(crd.metadata.annotations).toBeUndefined();
    expect(rulesOf(named(docs, "ClusterRole", "ghat-all"))).toContainEqual({
      apiGroups: ["apps"],
      resources: ["deployments", "statefulsets", "daemonsets"],
      verbs: ["list", "patch"],
    });
  });

  it("renders the ServiceMonitor only with the metrics Service it scrapes", async () => {
    const ns = await newNamespace("chart");
    const without = await render(ns, [
      "metrics.serviceMonitor.enabled=true",
      "metrics.service.enabled=false",
    ]);
    expect(kinds(without)).not.toContain("Service");
    expect(kinds(without)).not.toContain("ServiceMonitor");
    const docs = await render(ns, ["metrics.serviceMonitor.enabled=true"]);
    const service = named(docs, "Service", "ghat-metrics") as Doc;
    const monitor = named(docs, "ServiceMonitor", "ghat") as Doc & {
      spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] };
    };
    expect(service.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(monitor.spec.endpoints[0]?.port).toBe("metrics");
    await expectAccepted(docs);
  });

  it("in scoped mode, grants Secrets only through Roles in the watched and release namespaces", async () => {
    const ns = await newNamespace("chart");
    const watched = [await newNamespace("team-a"), await newNamespace("team-b")];
    const docs = await render(ns, [`watchNamespaces={${watched.join(",")}}`, "workloads.enabled=true"]);
    const clusterRoles = docs.filter((d) => d.kind === "ClusterRole");
    expect(clusterRoles).toHaveLength(3);
    for (const cr of clusterRoles)
      for (const rule of rulesOf(cr)) expect(rule.resources ?? [], cr.metadata.name).not.toContain("secrets");
    // Only non-sensitive cluster-scoped reads, and the ClusterGitHubApp status it reports.
    expect(rulesOf(named(docs, "ClusterRole", "ghat"))).toEqual([
      {
        apiGroups: ["ghat.dev"],
        resources: ["githubapptokens", "githubapps", "clustergithubapps"],
        verbs: ["get", "list", "watch"],
      },
      { apiGroups: [""], resources: ["namespaces"], verbs: ["get", "list", "watch"] },
      { apiGroups: ["ghat.dev"], resources: ["clustergithubapps/status"], verbs: ["get", "patch", "update"] },
    ]);
    for (const w of watched) {
      const role = named(docs, "Role", "ghat", w);
      expect(rulesOf(role)).toContainEqual({ apiGroups: [""], resources: ["secrets"], verbs: secretVerbs });
      expect(rulesOf(role)).toContainEqual({
        apiGroups: [""],
        resources: ["events"],
        verbs: ["create", "patch"],
      });
      expect(rulesOf(role)).toContainEqual({
        apiGroups: ["ghat.dev"],
        resources: ["githubapptokens/status"],
        verbs: ["patch"],
      });
      expect(rulesOf(role)).toContainEqual({
        apiGroups: ["apps"],
        resources: ["deployments", "statefulsets", "daemonsets"],
        verbs: ["list", "patch"],
      });
      expect(named(docs, "RoleBinding", "ghat", w)).toMatchObject({
        roleRef: { kind: "Role", name: "ghat" },
        subjects: [{ kind: "ServiceAccount", name: "ghat", namespace: ns }],
      });
    }
    // ClusterGitHubApp keys in the release namespace: read only.
    expect(rulesOf(named(docs, "Role", "ghat-keys", ns))).toEqual([
      { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch"] },
    ]);
    expect(named(docs, "RoleBinding", "ghat-keys", ns)).toMatchObject({ roleRef: { name: "ghat-keys" } });
    expect(containerOf(docs).args).toContain(`--namespaces=${watched.join(",")}`);
    await expectAccepted(docs);

    // The release namespace watched too: its full Role covers the keys, no second Role.
    const self = await render(ns, [`watchNamespaces={${ns},${watched[0]}}`]);
    expect(named(self, "Role", "ghat-keys")).toBeUndefined();
    expect(rulesOf(named(self, "Role", "ghat", ns))).toContainEqual({
      apiGroups: [""],
      resources: ["secrets"],
      verbs: secretVerbs,
    });
    await expectAccepted(self);
  });

  it("renders no RBAC with rbac.create=false, and no aggregated roles with rbac.aggregateClusterRoles=false", async () => {
    const none = await render("x", ["rbac.create=false"]);
    for (const k of ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"])
      expect(kinds(none)).not.toContain(k);
    const noAggregate = await render("x", ["rbac.aggregateClusterRoles=false"]);
    expect(noAggregate.filter((d) => d.kind === "ClusterRole").map((d) => d.metadata.name)).toEqual(["ghat"]);
  });

  it("installs as a dependency of an umbrella chart with global values", async () => {
    const fixture = `${fixtures}/umbrella`;
    const chart = parse(readFileSync(`${fixture}/Chart.yaml`, "utf8")) as {
      dependencies: { name: string; repository: string }[];
    };
    const dep = chart.dependencies.find((d) => d.name === "ghat");
    // The fixture points at this chart; the copy below builds from the same directory.
    expect(resolve(fixture, dep?.repository.replace(/^file:\/\//, "") ?? "")).toBe(resolve(chartDir));
    const copy = mkdtempSync(join(tmpdir(), "ghat-umbrella-"));
    try {
      cpSync(fixture, copy, { recursive: true });
      writeFileSync(
        `${copy}/Chart.yaml`,
        readFileSync(`${fixture}/Chart.yaml`, "utf8").replace(dep?.repository ?? "", `file://${chartDir}`),
      );
      await helmRun(["dependency", "build", copy]);
      expect(await helmRun(["lint", "--strict", copy])).toContain("0 chart(s) failed");
      const ns = await newNamespace("umbrella");
      const docs = await render(ns, [], { release: "platform", chart: copy });
      await expectAccepted(docs);
      expect(kinds(docs)).toContain("CustomResourceDefinition");
      expect(kinds(docs)).toContain("ServiceMonitor");
      const c = containerOf(docs);
      expect(c.image).toBe("registry.example.com/ghat-dev/ghat:0.1.0");
      expect(c.args).toContain("--leader-election-id=tokens-leader");
      expect(c.args).toContain("--github-timeout=20s");
      expect(deploymentOf(docs).spec.template.spec.imagePullSecrets).toEqual([{ name: "global-regcred" }]);
      for (const doc of docs)
        expect(doc.metadata.labels, `${doc.kind} ${doc.metadata.name}`).toMatchObject({
          team: "platform",
          "cost-center": "42",
        });
      // The subchart's schema still applies under the parent's key.
      await expect(render(ns, ["ghat.unknownKey=1"], { chart: copy })).rejects.toThrow(/unknownKey/);
      // The condition turns it off.
      expect(await render(ns, ["ghat.enabled=false"], { chart: copy })).toEqual([]);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it("refuses values its schema does not allow", async () => {
    await expect(render("x", ["workers=0"])).rejects.toThrow(/workers/);
    await expect(render("x", ["unknownKey=1"])).rejects.toThrow(/unknownKey/);
    await expect(render("x", ["image.digest=latest"])).rejects.toThrow(/digest/);
    await expect(
      render("x", ["podDisruptionBudget.minAvailable=1", "podDisruptionBudget.maxUnavailable=1"]),
    ).rejects.toThrow(/not both/);
    await expect(render("x", ["serviceAccount.create=false"])).rejects.toThrow(/serviceAccount.name/);
  });
});

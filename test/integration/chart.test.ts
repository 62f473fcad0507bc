import { execFile, execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { kubectl, newNamespace } from "../support/cluster.ts";

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;
let helm = "";

async function render(namespace: string, set: string[] = []): Promise<Record<string, unknown>[]> {
  const args = [
    "template",
    "ghat",
    `${root}charts/ghat`,
    "--namespace",
    namespace,
    "--kube-version",
    "1.34.4",
    "--include-crds",
  ];
  for (const s of set) args.push("--set", s);
  const { stdout } = await run(helm, args, { maxBuffer: 16 << 20 });
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as Record<string, unknown> | null)
    .filter((d): d is Record<string, unknown> => d !== null);
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

const kinds = (docs: Record<string, unknown>[]) => docs.map((d) => String(d.kind)).sort();

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

  it("lints cleanly in strict mode", async () => {
    const { stdout } = await run(helm, ["lint", "--strict", `${root}charts/ghat`]);
    expect(stdout).toContain("0 chart(s) failed");
  });

  it("ships CRDs identical to crds/", () => {
    const files = readdirSync(`${root}crds`).sort();
    expect(readdirSync(`${root}charts/ghat/crds`).sort()).toEqual(files);
    for (const f of files)
      expect(readFileSync(`${root}charts/ghat/crds/${f}`, "utf8")).toBe(
        readFileSync(`${root}crds/${f}`, "utf8"),
      );
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
    const r = await dryRun(docs);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const deployment = docs.find((d) => d.kind === "Deployment") as {
      spec: {
        replicas: number;
        template: {
          spec: {
            securityContext: object;
            containers: {
              securityContext: object;
              args: string[];
              livenessProbe: object;
              readinessProbe: object;
              resources: object;
            }[];
          };
        };
      };
    };
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
    expect(c?.args).toContain("--leader-elect=true");
    expect(c?.livenessProbe).toMatchObject({ httpGet: { path: "/healthz" } });
    expect(c?.readinessProbe).toMatchObject({ httpGet: { path: "/readyz" } });
  });

  it("renders non-default values that the API server accepts", async () => {
    const ns = await newNamespace("chart");
    const docs = await render(ns, [
      "replicaCount=1",
      "leaderElection.enabled=false",
      "watchNamespaces={team-a,team-b}",
      "metrics.serviceMonitor.enabled=true",
      "metrics.prometheusRule.enabled=true",
      "serviceAccount.name=custom",
      "logLevel=debug",
    ]);
    expect(kinds(docs)).toContain("ServiceMonitor");
    expect(kinds(docs)).toContain("PrometheusRule");
    expect(kinds(docs)).not.toContain("PodDisruptionBudget");
    expect(kinds(docs)).not.toContain("Role");
    const r = await dryRun(docs);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const args = (
      docs.find((d) => d.kind === "Deployment") as {
        spec: { template: { spec: { containers: { args: string[] }[] } } };
      }
    ).spec.template.spec.containers[0]?.args;
    expect(args).toContain("--namespaces=team-a,team-b");
    expect(args).toContain("--leader-elect=false");
  });

  it("refuses values its schema does not allow", async () => {
    await expect(render("x", ["workers=0"])).rejects.toThrow(/workers/);
    await expect(render("x", ["unknownKey=1"])).rejects.toThrow(/unknownKey/);
  });
});

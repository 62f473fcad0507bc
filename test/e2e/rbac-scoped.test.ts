import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { group, version } from "../../src/api/meta.ts";
import { controlPlane, kubectl, newNamespace } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { fastLeaderElection, owner, ready, tokenYaml } from "./operator.ts";

const root = new URL("../../", import.meta.url).pathname;

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
}
interface Doc {
  kind: string;
  metadata: { name: string; namespace?: string };
  subjects?: unknown[];
  rules?: Rule[];
  spec?: { template: { spec: { containers: { args: string[] }[] } } };
}

/**
 * Scoped mode (watchNamespaces set): the operator runs as a non-admin identity bound to exactly
 * the RBAC the chart renders with `watchNamespaces={a,b}` (a client-certificate user stands in
 * for the ServiceAccount), with the watch flag the chart's Deployment passes, on a real API
 * server with RBAC. Secrets are reachable only in the watched namespaces and (read only) in
 * the release namespace, for ClusterGitHubApp keys.
 */
describe("least privilege in scoped mode (watchNamespaces), on a real API server with RBAC", () => {
  const suffix = Math.random().toString(36).slice(2, 7);
  const release = `scoped-${suffix}`;
  const user = `ghat-scoped-${suffix}`;
  let operatorKubeconfig = "";
  /** Watched. */
  let nsA = "";
  let nsB = "";
  /** Not watched, and no Role of the chart in it. */
  let outside = "";
  let rendered: Doc[] = [];
  /** The in-process operator's flags; the chart's watch flag is added once it is rendered. */
  const flags = [
    // The Lease the chart's Role names: <fullname>-leader, derived from the release.
    "--leader-election-id",
    `${release}-ghat-leader`,
    ...fastLeaderElection,
    "--revoke-superseded-after",
    "1s",
  ];
  const fx = useOperator({
    operatorNamespace: true,
    operator: flags,
    operatorKubeconfig: async () => {
      nsA = await newNamespace("watched-a");
      nsB = await newNamespace("watched-b");
      outside = await newNamespace("unwatched");
      const helm =
        execFileSync("bash", [`${root}hack/helm/build.sh`], { encoding: "utf8" })
          .trim()
          .split("\n")
          .at(-1) ?? "";
      const text = execFileSync(
        helm,
        [
          "template",
          release,
          `${root}charts/ghat`,
          "--namespace",
          fx.opNs,
          "--kube-version",
          "1.34.4",
          "--set",
          `watchNamespaces={${nsA},${nsB}}`,
        ],
        { encoding: "utf8" },
      );
      rendered = parseAllDocuments(text)
        .map((d) => d.toJS() as Doc | null)
        .filter((d): d is Doc => d !== null);
      // The watch flag exactly as the chart's Deployment passes it.
      const deployment = rendered.find((d) => d.kind === "Deployment");
      const watch = deployment?.spec?.template.spec.containers[0]?.args.filter((a) =>
        a.startsWith("--namespaces="),
      );
      expect(watch).toEqual([`--namespaces=${nsA},${nsB}`]);
      flags.push(...(watch ?? []));
      const rbac = rendered
        .filter((d) => ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"].includes(d.kind))
        .map((d) =>
          d.subjects
            ? { ...d, subjects: [{ kind: "User", name: user, apiGroup: "rbac.authorization.k8s.io" }] }
            : d,
        );
      const applied = await kubectl(["apply", "-f", "-"], {
        input: rbac.map((d) => JSON.stringify(d)).join("\n"),
      });
      expect(applied.code, applied.stderr).toBe(0);
      operatorKubeconfig = (await controlPlane.createUser(user, [])).kubeconfigPath;
      return operatorKubeconfig;
    },
    afterStop: () =>
      kubectl(["delete", "clusterrole,clusterrolebinding", "-l", `app.kubernetes.io/instance=${release}`]),
  });
  const admin = fx.kube;
  const apply = (ns: string, yaml: string) => kubectl(["-n", ns, "apply", "-f", "-"], { input: yaml });
  const waitReady = (ns: string, name: string) =>
    kubectl(["-n", ns, "wait", "--for=condition=Ready", `ghat/${name}`, "--timeout=30s"]);
  /** A GitHubApp "app" with its key Secret in `ns`. */
  const withApp = async (ns: string) => {
    await fx.createKeySecret(ns);
    await fx.createApp(ns);
  };

  it("renders Roles only in the watched and release namespaces, and a ClusterRole with no rule on secrets", async () => {
    const roles = rendered.filter((d) => d.kind === "Role").map((d) => d.metadata.namespace);
    expect(new Set(roles)).toEqual(new Set([nsA, nsB, fx.opNs]));
    // What the API server holds, not only what was rendered.
    const held = await kubectl([
      "get",
      "clusterroles",
      "-l",
      `app.kubernetes.io/instance=${release}`,
      "-o",
      "json",
    ]);
    expect(held.code, held.stderr).toBe(0);
    const clusterRoles = (JSON.parse(held.stdout) as { items: Doc[] }).items;
    expect(clusterRoles.map((d) => d.metadata.name)).toContain(`${release}-ghat`);
    for (const cr of clusterRoles)
      for (const rule of cr.rules ?? []) {
        expect(rule.resources ?? [], cr.metadata.name).not.toContain("secrets");
        expect(rule.resources ?? [], cr.metadata.name).not.toContain("*");
      }
  });

  it("holds the leader Lease with only the chart's Roles", async () => {
    await expect.poll(() => fx.op.operator.leading(), { timeout: 20_000 }).toBe(true);
  });

  it("makes a GitHubAppToken in a watched namespace Ready and writes its Secret", async () => {
    await withApp(nsA);
    expect((await apply(nsA, tokenYaml("t", {}))).code).toBe(0);
    const waited = await waitReady(nsA, "t");
    expect(waited.code, waited.stderr).toBe(0);
    const token = (await admin.secretValue(nsA, "t-token")) ?? "";
    expect(fx.github.sim.checkToken(token).live).toBe(true);
    // A spec change re-mints and the superseded token is revoked (patch + delete rights in nsA).
    expect(
      (await apply(nsA, tokenYaml("t", { permissions: { contents: "read", issues: "read" } }))).code,
    ).toBe(0);
    await expect.poll(() => fx.github.sim.checkToken(token).live, { timeout: 20_000 }).toBe(false);
  });

  it("serves a ClusterGitHubApp whose key is in the release namespace to a watched namespace", async () => {
    await admin.createKeySecret(fx.opNs, "org-key", fx.github.keys.privateKeyPkcs1Pem);
    const name = `org-${suffix}`;
    expect(
      (
        await kubectl(["apply", "-f", "-"], {
          input: JSON.stringify(clusterApp(name, [nsB], fx.github.sim.url)),
        })
      ).code,
    ).toBe(0);
    const yaml = tokenYaml("c", { appRef: { kind: "ClusterGitHubApp", name }, repositories: ["app"] });
    expect((await apply(nsB, yaml)).code).toBe(0);
    const waited = await waitReady(nsB, "c");
    expect(waited.code, waited.stderr).toBe(0);
    const held = (await admin.secretValue(nsB, "c-token")) ?? "";
    expect(fx.github.sim.checkToken(held).live).toBe(true);
    // Delete: revoked, and its Secret gone.
    expect((await kubectl(["-n", nsB, "delete", "ghat", "c", "--timeout=30s"])).code).toBe(0);
    expect(fx.github.sim.checkToken(held).live).toBe(false);
    expect(await admin.secret(nsB, "c-token")).toBeUndefined();
  });

  it("does not see, and does not trip over, a GitHubAppToken in an unwatched namespace", async () => {
    await withApp(outside);
    expect((await apply(outside, tokenYaml("stray", {}))).code).toBe(0);
    // Created after the stray token: once it is Ready, the operator has had every chance to act
    // on the stray one had it seen it.
    expect((await apply(nsA, tokenYaml("after", {}))).code).toBe(0);
    const waited = await waitReady(nsA, "after");
    expect(waited.code, waited.stderr).toBe(0);
    const stray = await admin.getToken(outside, "stray");
    expect(stray?.status).toBeUndefined();
    expect((stray?.metadata as { finalizers?: string[] } | undefined)?.finalizers).toBeUndefined();
    expect(await admin.secret(outside, "stray-token")).toBeUndefined();
    // Nothing about it in the logs (no failed reconcile, no retry loop), and it still leads.
    expect(fx.op.logs.filter((l) => l.includes(outside))).toEqual([]);
    expect(fx.op.operator.leading()).toBe(true);
    // And it keeps working in the watched namespaces.
    expect(ready(await admin.getToken(nsA, "t"))?.status).toBe("True");
  });

  it.each([
    ["kube-system", () => "kube-system"],
    ["an unwatched namespace", () => outside],
  ])("is refused Secrets in %s", async (_, ns) => {
    for (const verb of ["get", "list", "watch", "create", "patch", "delete"]) {
      const r = await kubectl(["auth", "can-i", verb, "secrets", "-n", ns(), "--as", user]);
      expect(r.stdout.trim(), verb).toBe("no");
    }
    // A direct list and get with the operator's own credentials: 403 Forbidden.
    const list = await kubectl(["-n", ns(), "get", "secrets"], { kubeconfig: operatorKubeconfig });
    expect(list.code).not.toBe(0);
    expect(list.stderr).toMatch(/Forbidden/);
    expect(list.stderr).toContain(`User "${user}" cannot list resource "secrets"`);
    const secret = ns() === outside ? "app-key" : "no-such-secret";
    if (ns() === outside) expect(await admin.secret(outside, "app-key")).toBeDefined();
    const get = await kubectl(["-n", ns(), "get", "secret", secret], { kubeconfig: operatorKubeconfig });
    expect(get.code).not.toBe(0);
    expect(get.stderr).toMatch(/Forbidden/);
  });

  it("is refused Secrets cluster-wide and writes to key Secrets in the release namespace", async () => {
    const can = async (...args: string[]) =>
      (await kubectl(["auth", "can-i", ...args, "--as", user])).stdout.trim();
    expect(await can("list", "secrets", "--all-namespaces")).toBe("no");
    expect(await can("watch", "secrets", "--all-namespaces")).toBe("no");
    const all = await kubectl(["get", "secrets", "--all-namespaces"], { kubeconfig: operatorKubeconfig });
    expect(all.stderr).toMatch(/Forbidden/);
    // Release namespace: read only (ClusterGitHubApp keys).
    expect(await can("get", "secrets", "-n", fx.opNs)).toBe("yes");
    for (const verb of ["create", "patch", "update", "delete"])
      expect(await can(verb, "secrets", "-n", fx.opNs), verb).toBe("no");
    // Watched namespaces: what a token needs.
    for (const ns of [nsA, nsB])
      for (const verb of ["get", "list", "watch", "create", "patch", "delete"])
        expect(await can(verb, "secrets", "-n", ns), `${verb} in ${ns}`).toBe("yes");
    // The App status writer's rights (namespaced in the watched namespaces, cluster-scoped for
    // ClusterGitHubApps); none elsewhere.
    for (const verb of ["get", "patch", "update"]) {
      expect(await can(verb, "githubapps.ghat.dev", "--subresource=status", "-n", nsA), verb).toBe("yes");
      expect(await can(verb, "githubapps.ghat.dev", "--subresource=status", "-n", outside), verb).toBe("no");
      expect(await can(verb, "clustergithubapps.ghat.dev", "--subresource=status"), verb).toBe("yes");
    }
    expect(await can("update", "clustergithubapps.ghat.dev")).toBe("no");
  });

  it("was denied nothing it tried", () => {
    expect(fx.op.logs.filter((l) => /User \\?"[^"\\]+\\?" cannot /.test(l))).toEqual([]);
  });

  fx.itLeaksNothing();
});

function clusterApp(name: string, namespaces: string[], baseUrl: string) {
  return {
    apiVersion: `${group}/${version}`,
    kind: "ClusterGitHubApp",
    metadata: { name },
    spec: {
      appId: 4242,
      privateKeySecretRef: { name: "org-key" },
      baseUrl,
      policy: {
        namespaces: { names: namespaces },
        installations: { owners: [owner] },
        repositories: [`${owner}/app`],
        maxPermissions: { contents: "read" },
      },
    },
  };
}

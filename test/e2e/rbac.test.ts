import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { group, version } from "../../src/api/meta.ts";
import { controlPlane, kubectl, newNamespace } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { fastLeaderElection, owner, ready, tokenYaml } from "./operator.ts";

const root = new URL("../../", import.meta.url).pathname;

/**
 * The operator runs as a non-admin identity bound to exactly the chart's RBAC (a client
 * certificate user stands in for the ServiceAccount), on a real API server with RBAC.
 */
describe("least privilege, on a real API server with RBAC", () => {
  let operatorKubeconfig: string;
  let aliceKubeconfig: string;
  let aliceNs: string;
  const suffix = Math.random().toString(36).slice(2, 7);
  const fx = useOperator({
    operatorNamespace: true,
    operator: [
      // The Lease the chart's Role names: <fullname>-leader, derived from the release.
      "--leader-election-id",
      `rbac-${suffix}-ghat-leader`,
      ...fastLeaderElection,
      "--revoke-superseded-after",
      "1s",
    ],
    operatorKubeconfig: async () => {
      const helm =
        execFileSync("bash", [`${root}hack/helm/build.sh`], { encoding: "utf8" })
          .trim()
          .split("\n")
          .at(-1) ?? "";
      const rendered = execFileSync(
        helm,
        [
          "template",
          `rbac-${suffix}`,
          `${root}charts/ghat`,
          "--namespace",
          fx.opNs,
          "--kube-version",
          "1.34.4",
        ],
        {
          encoding: "utf8",
        },
      );
      const user = `ghat-operator-${suffix}`;
      const rbac = parseAllDocuments(rendered)
        .map((d) => d.toJS() as { kind: string; subjects?: unknown[] })
        .filter((d) => ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"].includes(d?.kind))
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
      aliceKubeconfig = (await controlPlane.createUser(`alice-${suffix}`, [])).kubeconfigPath;
      aliceNs = await newNamespace("team-alice");
      await kubectl([
        "-n",
        aliceNs,
        "create",
        "rolebinding",
        "alice-admin",
        "--clusterrole=admin",
        `--user=alice-${suffix}`,
      ]);
      return operatorKubeconfig;
    },
    afterStop: () =>
      kubectl([
        "delete",
        "clusterrole,clusterrolebinding",
        "-l",
        `app.kubernetes.io/instance=rbac-${suffix}`,
      ]),
  });
  const admin = fx.kube;

  it("holds the leader Lease with only the chart's Role", async () => {
    await expect.poll(() => fx.op.operator.leading(), { timeout: 20_000 }).toBe(true);
  });

  it("does everything it must with only the chart's rules: GitHubApp, ClusterGitHubApp, refresh, delete", async () => {
    const ns = await fx.withApp("rbac");
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenYaml("t", {}) })).code).toBe(0);
    expect((await kubectl(["-n", ns, "wait", "--for=condition=Ready", "ghat/t", "--timeout=30s"])).code).toBe(
      0,
    );
    // A spec change re-mints and the superseded token is revoked.
    const first = (await admin.secretValue(ns, "t-token")) ?? "";
    expect(
      (
        await kubectl(["-n", ns, "apply", "-f", "-"], {
          input: tokenYaml("t", { permissions: { contents: "read", issues: "read" } }),
        })
      ).code,
    ).toBe(0);
    await expect.poll(async () => fx.github.sim.checkToken(first).live, { timeout: 20_000 }).toBe(false);
    // A cluster App whose key lives in the operator's namespace.
    await admin.createKeySecret(fx.opNs, "org-key", fx.github.keys.privateKeyPkcs1Pem);
    const cluster = clusterApp(`org-${suffix}`, [ns], fx.github.sim.url);
    expect((await kubectl(["apply", "-f", "-"], { input: JSON.stringify(cluster) })).code).toBe(0);
    const yaml = tokenYaml("c", {
      appRef: { kind: "ClusterGitHubApp", name: `org-${suffix}` },
      repositories: ["app"],
    });
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: yaml })).code).toBe(0);
    expect((await kubectl(["-n", ns, "wait", "--for=condition=Ready", "ghat/c", "--timeout=30s"])).code).toBe(
      0,
    );
    // Delete: revoked and gone.
    const held = (await admin.secretValue(ns, "c-token")) ?? "";
    expect((await kubectl(["-n", ns, "delete", "ghat", "c", "--timeout=30s"])).code).toBe(0);
    expect(fx.github.sim.checkToken(held).live).toBe(false);
    expect(await admin.secret(ns, "c-token")).toBeUndefined();
    // RBAC denied nothing it tried (a namespace being deleted refusing new objects is not RBAC).
    expect(fx.op.logs.filter((l) => /User \\?"[^"\\]+\\?" cannot /.test(l))).toEqual([]);
  });

  it.each([
    ["create", "pods", []],
    ["get", "configmaps", []],
    ["create", "clusterrolebindings", []],
    ["update", "githubapps.ghat.dev", []],
    ["patch", "clustergithubapps.ghat.dev", []],
    ["create", "clustergithubapps.ghat.dev", []],
    ["delete", "namespaces", []],
    ["update", "leases.coordination.k8s.io/other-lease", []],
    ["create", "serviceaccounts/token", []],
  ])("is refused %s %s", async (verb, resource) => {
    const r = await kubectl(["auth", "can-i", verb, resource, "-n", fx.opNs], {
      kubeconfig: operatorKubeconfig,
    });
    expect(r.stdout.trim()).toBe("no");
  });

  it("a namespace admin cannot obtain a token outside a ClusterGitHubApp's policy by any field it can write", async () => {
    await admin.createKeySecret(fx.opNs, "guarded-key", fx.github.keys.privateKeyPkcs1Pem);
    const name = `guarded-${suffix}`;
    const policy = clusterApp(name, [aliceNs], fx.github.sim.url, "guarded-key");
    expect((await kubectl(["apply", "-f", "-"], { input: JSON.stringify(policy) })).code).toBe(0);
    const asAlice = (args: string[], input?: string) =>
      kubectl(["-n", aliceNs, ...args], { kubeconfig: aliceKubeconfig, ...(input ? { input } : {}) });

    // She cannot read the App's key, nor change or create cluster Apps.
    expect(
      (await kubectl(["-n", fx.opNs, "get", "secret", "guarded-key"], { kubeconfig: aliceKubeconfig })).code,
    ).not.toBe(0);
    expect(
      (
        await kubectl(["patch", "clustergithubapp", name, "--type=merge", "-p", "{}"], {
          kubeconfig: aliceKubeconfig,
        })
      ).code,
    ).not.toBe(0);
    expect((await asAlice(["auth", "can-i", "create", "clustergithubapps.ghat.dev"])).stdout.trim()).toBe(
      "no",
    );

    const appRef = { kind: "ClusterGitHubApp", name };
    const attempts: [string, Record<string, unknown>, string][] = [
      [
        "a wider permission",
        { appRef, permissions: { contents: "write" }, repositories: ["app"] },
        "contents: write (at most read)",
      ],
      [
        "another permission",
        { appRef, permissions: { issues: "read" }, repositories: ["app"] },
        'permission "issues"',
      ],
      [
        "every permission",
        { appRef, permissions: {}, repositories: ["app"] },
        "without explicit permissions",
      ],
      ["another repository", { appRef, repositories: ["library"] }, `"${owner}/library"`],
      ["every repository", { appRef }, "without explicit repositories"],
      ["repository ids", { appRef, repositoryIds: [502] }, "repositoryIds"],
      [
        "another owner",
        { appRef, installation: { owner: "evil" }, repositories: ["app"] },
        'installations of "evil"',
      ],
      [
        "an installation id",
        { appRef, installation: { id: 9001 }, repositories: ["app"] },
        "installation id 9001",
      ],
    ];
    for (const [i, [, spec]] of attempts.entries()) {
      expect((await asAlice(["apply", "-f", "-"], tokenYaml(`x${i}`, spec))).code).toBe(0);
    }
    for (const [i, [what, , message]] of attempts.entries()) {
      await expect
        .poll(async () => ready(await admin.getToken(aliceNs, `x${i}`))?.reason, { timeout: 20_000 })
        .toBe("NotPermitted");
      expect(ready(await admin.getToken(aliceNs, `x${i}`))?.message, what).toContain(message);
      expect(await admin.secret(aliceNs, `x${i}-token`), what).toBeUndefined();
    }
    // Within the policy, it works.
    expect(
      (await asAlice(["apply", "-f", "-"], tokenYaml("ok", { appRef, repositories: ["app"] }))).code,
    ).toBe(0);
    await expect
      .poll(async () => ready(await admin.getToken(aliceNs, "ok"))?.status, { timeout: 20_000 })
      .toBe("True");
    // And another namespace she does not admin cannot be used even with her token names.
    expect(
      (
        await kubectl(["-n", fx.opNs, "apply", "-f", "-"], {
          kubeconfig: aliceKubeconfig,
          input: tokenYaml("steal", { appRef }),
        })
      ).code,
    ).not.toBe(0);
  });
  fx.itLeaksNothing();
});

function clusterApp(name: string, namespaces: string[], baseUrl: string, key = "org-key") {
  return {
    apiVersion: `${group}/${version}`,
    kind: "ClusterGitHubApp",
    metadata: { name },
    spec: {
      appId: 4242,
      privateKeySecretRef: { name: key },
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

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { group, version } from "../../src/api/meta.ts";
import { kubeconfigPath, kubectl, newNamespace } from "../support/cluster.ts";
import {
  allLogs,
  Kube,
  leaks,
  namespaceWithApp,
  owner,
  type RunningOperator,
  ready,
  runOperator,
  startGitHub,
  tokenYaml,
} from "./operator.ts";

/**
 * Every error class becomes its reason with a readable message and a Warning event, and the
 * token recovers once the cause is fixed, within the stated bound.
 */
describe("errors are classified and recover", () => {
  let github: Awaited<ReturnType<typeof startGitHub>>;
  let op: RunningOperator;
  let kube: Kube;
  let opNs: string;
  const bound = { timeout: 30_000, interval: 250 };

  beforeAll(async () => {
    github = await startGitHub();
    kube = new Kube(kubeconfigPath());
    opNs = await newNamespace("ghat-system");
    op = await runOperator(kubeconfigPath(), ["--operator-namespace", opNs, "--terminal-retry", "2s"]);
  });
  afterAll(async () => {
    await op?.stop();
    await github?.sim.close();
  });

  const withApp = (prefix: string, app: Record<string, unknown> = {}, pem?: string) =>
    namespaceWithApp(kube, github, prefix, app, pem);
  const reason = async (ns: string, name: string) => ready(await kube.getToken(ns, name));
  async function apply(ns: string, yaml: string) {
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: yaml })).code).toBe(0);
  }
  async function expectReason(ns: string, name: string, want: string, message: string) {
    await expect.poll(async () => (await reason(ns, name))?.reason, bound).toBe(want);
    const r = await reason(ns, name);
    expect(r?.status).toBe("False");
    expect(r?.message).toContain(message);
    const events = await kubectl([
      "-n",
      ns,
      "get",
      "events",
      "--field-selector",
      `involvedObject.name=${name},type=Warning`,
      "-o",
      "jsonpath={.items[*].reason}",
    ]);
    expect(events.stdout).toContain(want);
  }
  const expectReady = (ns: string, name: string) =>
    expect.poll(async () => (await reason(ns, name))?.status, bound).toBe("True");

  it("InvalidPrivateKey, then a fixed key Secret is picked up without a restart", async () => {
    const openssh =
      // A fake OpenSSH armour built at runtime: no key-shaped text is committed.
      `${["BEGIN", "END"]
        .map((edge) => `-----${edge} OPENSSH ${"PRIVATE"} KEY-----`)
        .join("\nb3BlbnNzaC1rZXktdjEAAAAA\n")}\n`;
    const ns = await withApp("badkey", {}, openssh);
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "InvalidPrivateKey", "OpenSSH");
    await kube.core.replaceNamespacedSecret({
      namespace: ns,
      name: "app-key",
      body: {
        metadata: { name: "app-key" },
        stringData: { "private-key.pem": github.keys.privateKeyPkcs1Pem.replace(/\n/g, "\\n") },
      },
    });
    await expectReady(ns, "t");
  });

  it("PrivateKeyNotFound, then the Secret appears", async () => {
    const ns = await newNamespace("nokey");
    await kube.createApp(ns, "app", {
      appId: 4242,
      privateKeySecretRef: { name: "app-key" },
      baseUrl: github.sim.url,
    });
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "PrivateKeyNotFound", '"app-key"');
    await kube.createKeySecret(ns, "app-key", Buffer.from(github.keys.privateKeyPkcs1Pem).toString("base64"));
    await expectReady(ns, "t");
  });

  it("AppNotFound, then the App appears", async () => {
    const ns = await newNamespace("noapp");
    await kube.createKeySecret(ns, "app-key", github.keys.privateKeyPkcs1Pem);
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "AppNotFound", 'GitHubApp "app"');
    await kube.createApp(ns, "app", {
      appId: 4242,
      privateKeySecretRef: { name: "app-key" },
      baseUrl: github.sim.url,
    });
    await expectReady(ns, "t");
  });

  it("JWTRejected for an App id GitHub does not know, then the fixed App", async () => {
    const ns = await withApp("jwt", { appId: 777 });
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "JWTRejected", "Integration not found");
    await kubectl(["-n", ns, "patch", "githubapp", "app", "--type=merge", "-p", '{"spec":{"appId":4242}}']);
    await expectReady(ns, "t");
  });

  it("InstallationNotFound, then GitHub installs the App", async () => {
    const ns = await withApp("noinst");
    await apply(ns, tokenYaml("t", { installation: { owner: "latecomer" } }));
    await expectReason(ns, "t", "InstallationNotFound", "404");
    github.sim.state.installations.set(9100, {
      id: 9100,
      appId: 4242,
      account: { login: "latecomer", type: "Organization" },
      permissions: { contents: "read" },
      repositorySelection: "all",
    });
    await expectReady(ns, "t");
  });

  it("InstallationSuspended, then unsuspended", async () => {
    github.sim.state.installations.set(9200, {
      id: 9200,
      appId: 4242,
      account: { login: "frozen", type: "Organization" },
      permissions: { contents: "read" },
      repositorySelection: "all",
      suspendedAt: "2026-01-01T00:00:00Z",
    });
    const ns = await withApp("suspended");
    await apply(ns, tokenYaml("t", { installation: { id: 9200 } }));
    await expectReason(ns, "t", "InstallationSuspended", "suspended");
    const inst = github.sim.state.installations.get(9200);
    if (inst) inst.suspendedAt = null;
    await expectReady(ns, "t");
  });

  it("PermissionsNotGranted and RepositoriesNotGranted (422), then a fixed spec", async () => {
    const ns = await withApp("scope");
    await apply(ns, tokenYaml("p", { permissions: { administration: "read" } }));
    await apply(ns, tokenYaml("r", { repositories: ["missing-repo"] }));
    await expectReason(ns, "p", "PermissionsNotGranted", "not granted to this installation");
    await expectReason(ns, "r", "RepositoriesNotGranted", "not accessible to the parent installation");
    await apply(ns, tokenYaml("p", { permissions: { contents: "read" } }));
    await apply(ns, tokenYaml("r", { repositories: ["app"] }));
    await expectReady(ns, "p");
    await expectReady(ns, "r");
  });

  it("RateLimited honours the reset time, then recovers", async () => {
    const ns = await withApp("ratelimit");
    github.sim.faults.add({
      route: "apps/create-installation-access-token",
      fault: { kind: "primaryRateLimit", resetInSeconds: 3 },
      count: 1,
    });
    const before = github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0;
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "RateLimited", "rate limit");
    await expectReady(ns, "t");
    expect((github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0) - before).toBe(2);
  });

  it("GitHubUnavailable on 5xx bursts backs off, then recovers", async () => {
    const ns = await withApp("unavailable");
    github.sim.faults.add({
      route: "apps/create-installation-access-token",
      fault: { kind: "status", status: 503 },
      count: 3,
    });
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "GitHubUnavailable", "503");
    await expectReady(ns, "t");
  });

  it("InvalidSpec names a bad template's position", async () => {
    const ns = await withApp("template");
    await apply(
      ns,
      tokenYaml("t", {
        secrets: [
          { name: "t-out", format: "template", template: { data: { url: "https://{{ tokn }}@github.com" } } },
        ],
      }),
    );
    await expectReason(ns, "t", "InvalidSpec", 'line 1, column 12: unknown variable "tokn"');
    expect(await kube.secret(ns, "t-out")).toBeUndefined();
  });

  it("NotPermitted outside a ClusterGitHubApp's policy, allowed by a policy change, withdrawn by another", async () => {
    const ns = await newNamespace("policy");
    await kube.createKeySecret(opNs, "org-key", github.keys.privateKeyPkcs1Pem);
    const cluster = {
      apiVersion: `${group}/${version}`,
      kind: "ClusterGitHubApp",
      metadata: { name: `org-${ns}` },
      spec: {
        appId: 4242,
        privateKeySecretRef: { name: "org-key" },
        baseUrl: github.sim.url,
        policy: {
          namespaces: { names: ["somewhere-else"] },
          installations: { owners: [owner] },
          repositories: [`${owner}/*`],
          maxPermissions: { contents: "read" },
        },
      },
    };
    expect((await kubectl(["apply", "-f", "-"], { input: JSON.stringify(cluster) })).code).toBe(0);
    await apply(
      ns,
      tokenYaml("t", { appRef: { kind: "ClusterGitHubApp", name: `org-${ns}` }, repositories: ["app"] }),
    );
    await expectReason(ns, "t", "NotPermitted", `namespace "${ns}"`);
    await kubectl([
      "patch",
      "clustergithubapp",
      `org-${ns}`,
      "--type=merge",
      "-p",
      JSON.stringify({ spec: { policy: { namespaces: { names: [ns] } } } }),
    ]);
    await expectReady(ns, "t");
    // Narrowing the policy withdraws the token: revoked at once and its Secret removed.
    const held = (await kube.secretValue(ns, "t-token")) ?? "";
    expect(github.sim.checkToken(held).live).toBe(true);
    await kubectl([
      "patch",
      "clustergithubapp",
      `org-${ns}`,
      "--type=merge",
      "-p",
      JSON.stringify({ spec: { policy: { maxPermissions: { contents: null, metadata: "read" } } } }),
    ]);
    await expectReason(ns, "t", "NotPermitted", 'permission "contents" (policy.maxPermissions)');
    const events = await kubectl([
      "-n",
      ns,
      "get",
      "events",
      "--field-selector",
      "involvedObject.name=t,reason=NotPermitted",
      "-o",
      "jsonpath={.items[*].message}",
    ]);
    expect(events.stdout).toContain("its token was revoked and its Secrets removed");
    await expect.poll(() => kube.secret(ns, "t-token"), bound).toBeUndefined();
    expect(github.sim.checkToken(held)).toMatchObject({ live: false, reason: "revoked" });
    await kubectl(["delete", "clustergithubapp", `org-${ns}`]);
  });
  it("leaks no token or key into logs, events, status or spec", async () => {
    expect(op.logs.length).toBeGreaterThan(0);
    expect(await leaks(github, [...allLogs])).toEqual([]);
  });
});

import { describe, expect, it } from "vitest";
import { group, version } from "../../src/api/meta.ts";
import { kubectl, newNamespace } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { owner, ready, tokenYaml } from "./operator.ts";

/**
 * Every error class becomes its reason with a readable message and a Warning event, and the
 * token recovers once the cause is fixed, within the stated bound.
 */
describe("errors are classified and recover", () => {
  const fx = useOperator({ operatorNamespace: true, operator: ["--terminal-retry", "2s"] });
  const { kube } = fx;
  const bound = { timeout: 30_000, interval: 250 };

  /** One field of the events in `ns` that match a field selector. */
  const events = async (ns: string, selector: string, field: string) =>
    (
      await kubectl([
        "-n",
        ns,
        "get",
        "events",
        "--field-selector",
        selector,
        "-o",
        `jsonpath={.items[*].${field}}`,
      ])
    ).stdout;
  /** GitHub installs the App on organization `login` (contents: read, all repositories). */
  const install = (id: number, login: string, extra: { suspendedAt?: string } = {}) =>
    fx.github.sim.state.installations.set(id, {
      id,
      appId: 4242,
      account: { login, type: "Organization" },
      permissions: { contents: "read" },
      repositorySelection: "all",
      ...extra,
    });
  const patchPolicy = (app: string, policy: Record<string, unknown>) =>
    kubectl(["patch", "clustergithubapp", app, "--type=merge", "-p", JSON.stringify({ spec: { policy } })]);
  const reason = async (ns: string, name: string) => ready(await kube.getToken(ns, name));
  async function apply(ns: string, yaml: string) {
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: yaml })).code).toBe(0);
  }
  async function expectReason(ns: string, name: string, want: string, message: string) {
    await expect.poll(async () => (await reason(ns, name))?.reason, bound).toBe(want);
    const r = await reason(ns, name);
    expect(r?.status).toBe("False");
    expect(r?.message).toContain(message);
    expect(await events(ns, `involvedObject.name=${name},type=Warning`, "reason")).toContain(want);
  }
  const expectReady = (ns: string, name: string) =>
    expect.poll(async () => (await reason(ns, name))?.status, bound).toBe("True");

  it("InvalidPrivateKey, then a fixed key Secret is picked up without a restart", async () => {
    const openssh =
      // A fake OpenSSH armour built at runtime: no key-shaped text is committed.
      `${["BEGIN", "END"]
        .map((edge) => `-----${edge} OPENSSH ${"PRIVATE"} KEY-----`)
        .join("\nb3BlbnNzaC1rZXktdjEAAAAA\n")}\n`;
    const ns = await fx.withApp("badkey", {}, openssh);
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "InvalidPrivateKey", "OpenSSH");
    await kube.core.replaceNamespacedSecret({
      namespace: ns,
      name: "app-key",
      body: {
        metadata: { name: "app-key" },
        stringData: { "private-key.pem": fx.github.keys.privateKeyPkcs1Pem.replace(/\n/g, "\\n") },
      },
    });
    await expectReady(ns, "t");
  });

  it("PrivateKeyNotFound, then the Secret appears", async () => {
    const ns = await newNamespace("nokey");
    await fx.createApp(ns);
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "PrivateKeyNotFound", '"app-key"');
    await fx.createKeySecret(ns, Buffer.from(fx.github.keys.privateKeyPkcs1Pem).toString("base64"));
    await expectReady(ns, "t");
  });

  it("AppNotFound, then the App appears", async () => {
    const ns = await newNamespace("noapp");
    await fx.createKeySecret(ns);
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "AppNotFound", 'GitHubApp "app"');
    await fx.createApp(ns);
    await expectReady(ns, "t");
  });

  it("JWTRejected for an App id GitHub does not know, then the fixed App", async () => {
    const ns = await fx.withApp("jwt", { appId: 777 });
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "JWTRejected", "Integration not found");
    await kubectl(["-n", ns, "patch", "githubapp", "app", "--type=merge", "-p", '{"spec":{"appId":4242}}']);
    await expectReady(ns, "t");
  });

  it("InstallationNotFound, then GitHub installs the App", async () => {
    const ns = await fx.withApp("noinst");
    await apply(ns, tokenYaml("t", { installation: { owner: "latecomer" } }));
    await expectReason(ns, "t", "InstallationNotFound", "404");
    install(9100, "latecomer");
    await expectReady(ns, "t");
  });

  it("InstallationSuspended, then unsuspended", async () => {
    install(9200, "frozen", { suspendedAt: "2026-01-01T00:00:00Z" });
    const ns = await fx.withApp("suspended");
    await apply(ns, tokenYaml("t", { installation: { id: 9200 } }));
    await expectReason(ns, "t", "InstallationSuspended", "suspended");
    const inst = fx.github.sim.state.installations.get(9200);
    if (inst) inst.suspendedAt = null;
    await expectReady(ns, "t");
  });

  it("PermissionsNotGranted and RepositoriesNotGranted (422), then a fixed spec", async () => {
    const ns = await fx.withApp("scope");
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
    const ns = await fx.withApp("ratelimit");
    fx.github.sim.faults.add({
      route: "apps/create-installation-access-token",
      fault: { kind: "primaryRateLimit", resetInSeconds: 3 },
      count: 1,
    });
    const before = fx.github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0;
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "RateLimited", "rate limit");
    await expectReady(ns, "t");
    expect((fx.github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0) - before).toBe(2);
  });

  it("GitHubUnavailable on 5xx bursts backs off, then recovers", async () => {
    const ns = await fx.withApp("unavailable");
    fx.github.sim.faults.add({
      route: "apps/create-installation-access-token",
      fault: { kind: "status", status: 503 },
      count: 3,
    });
    await apply(ns, tokenYaml("t", {}));
    await expectReason(ns, "t", "GitHubUnavailable", "503");
    await expectReady(ns, "t");
  });

  it("InvalidSpec names a bad template's position", async () => {
    const ns = await fx.withApp("template");
    await apply(
      ns,
      tokenYaml("t", {
        secrets: [
          {
            name: "t-out",
            format: "template",
            template: { data: { url: "https://{{ tokn }}@fx.github.com" } },
          },
        ],
      }),
    );
    await expectReason(ns, "t", "InvalidSpec", 'line 1, column 12: unknown variable "tokn"');
    expect(await kube.secret(ns, "t-out")).toBeUndefined();
  });

  it("NotPermitted outside a ClusterGitHubApp's policy, allowed by a policy change, withdrawn by another", async () => {
    const ns = await newNamespace("policy");
    await kube.createKeySecret(fx.opNs, "org-key", fx.github.keys.privateKeyPkcs1Pem);
    const cluster = {
      apiVersion: `${group}/${version}`,
      kind: "ClusterGitHubApp",
      metadata: { name: `org-${ns}` },
      spec: {
        appId: 4242,
        privateKeySecretRef: { name: "org-key" },
        baseUrl: fx.github.sim.url,
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
    await patchPolicy(`org-${ns}`, { namespaces: { names: [ns] } });
    await expectReady(ns, "t");
    // Narrowing the policy withdraws the token: revoked at once and its Secret removed.
    const held = (await kube.secretValue(ns, "t-token")) ?? "";
    expect(fx.github.sim.checkToken(held).live).toBe(true);
    await patchPolicy(`org-${ns}`, { maxPermissions: { contents: null, metadata: "read" } });
    await expectReason(ns, "t", "NotPermitted", 'permission "contents" (policy.maxPermissions)');
    expect(await events(ns, "involvedObject.name=t,reason=NotPermitted", "message")).toContain(
      "its token was revoked and its Secrets removed",
    );
    await expect.poll(() => kube.secret(ns, "t-token"), bound).toBeUndefined();
    expect(fx.github.sim.checkToken(held)).toMatchObject({ live: false, reason: "revoked" });
    await kubectl(["delete", "clustergithubapp", `org-${ns}`]);
  });
  fx.itLeaksNothing();
});

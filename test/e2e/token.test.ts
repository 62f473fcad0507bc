import { describe, expect, it } from "vitest";
import { kubectl } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { installationId, owner, ready, tokenYaml } from "./operator.ts";

/**
 * GitHubAppToken end to end: the real API server, the operator in-process, the simulator
 * as GitHub. Tokens live 3600 s here unless a test says otherwise.
 */
describe("GitHubAppToken on a real API server", () => {
  const fx = useOperator({ operator: ["--revoke-superseded-after", "2s", "--terminal-retry", "2s"] });
  const { kube } = fx;
  const setup = (prefix: string) => fx.withApp(prefix);

  async function apply(ns: string, yaml: string) {
    const r = await kubectl(["-n", ns, "apply", "-f", "-"], { input: yaml });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  }

  async function waitReady(ns: string, name: string) {
    const r = await kubectl(["-n", ns, "wait", "--for=condition=Ready", `ghat/${name}`, "--timeout=60s"]);
    expect(r.stdout + r.stderr).toContain("condition met");
  }

  it("apply → Ready, and the Secret's token is live with exactly the requested scope", async () => {
    const ns = await setup("ready");
    await apply(
      ns,
      tokenYaml("ci", {
        permissions: { contents: "read", issues: "write" },
        repositories: ["app", "library"],
      }),
    );
    await waitReady(ns, "ci");
    const token = await kube.secretValue(ns, "ci-token");
    expect(token).toMatch(/^ghs_/);
    const check = fx.github.sim.checkToken(token ?? "", `${owner}/app`);
    expect(check.live).toBe(true);
    expect(check.scope?.permissions).toEqual({ contents: "read", issues: "write" });
    expect(fx.github.sim.checkToken(token ?? "", `${owner}/docs`).live).toBe(false);
    const t = await kube.getToken(ns, "ci");
    expect(ready(t)).toMatchObject({ status: "True", reason: "Issued" });
    expect(t?.status?.installationId).toBe(installationId);
    expect(t?.status?.observedGeneration).toBe(1);
    const secret = await kube.secret(ns, "ci-token");
    expect(Date.parse(secret?.metadata?.annotations?.["ghat.dev/expires-at"] ?? "")).toBe(
      Date.parse(t?.status?.expiresAt ?? ""),
    );
    expect(secret?.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: "GitHubAppToken",
      name: "ci",
      controller: true,
    });
  });

  it("shows the columns and explains every field with kubectl", async () => {
    const ns = await setup("kubectl");
    await apply(ns, tokenYaml("cols", {}));
    await waitReady(ns, "cols");
    const get = await kubectl(["-n", ns, "get", "ghat"]);
    expect(get.stdout).toMatch(/NAME\s+READY\s+REASON\s+SECRETS\s+EXPIRES\s+REFRESH\s+AGE/);
    expect(get.stdout).toMatch(/cols\s+True\s+Issued/);
    const explain = await kubectl(["explain", "githubapptoken.spec.installation"]);
    expect(explain.stdout).toContain("exactly one of id, owner or repository");
  });

  it("rejects malformed specs at admission with a readable message", async () => {
    const ns = await setup("admission");
    const cases: [Record<string, unknown>, string][] = [
      [{ permissions: { contents: "admin" } }, "accept only: read, write"],
      [{ permissions: { not_a_permission: "read" } }, "unknown permission name"],
      [{ installation: { id: 1, owner: "acme" } }, "exactly one of id, owner or repository"],
      [{ repositories: Array.from({ length: 501 }, (_, i) => `r${i}`) }, "must have at most 500 items"],
      [
        { refreshPolicy: { refreshBefore: "5m", minRemainingLifetime: "10m" } },
        "refreshBefore must be longer",
      ],
      [{ secrets: [] }, "should have at least 1 items"],
    ];
    for (const [spec, message] of cases) {
      const r = await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenYaml("bad", spec) });
      expect(r.code, JSON.stringify(spec)).not.toBe(0);
      expect(r.stderr).toContain(message);
    }
  });

  it("a deleted Secret comes back at once from its sibling output, without a mint", async () => {
    const ns = await setup("restore");
    const secrets = [{ name: "pair-token" }, { name: "pair-flux", format: "basicAuth" }];
    await apply(ns, tokenYaml("pair", { secrets }));
    await waitReady(ns, "pair");
    const first = await kube.secretValue(ns, "pair-token");
    const mints = () => fx.github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0;
    const before = mints();
    await kube.core.deleteNamespacedSecret({ namespace: ns, name: "pair-flux" });
    await expect.poll(() => kube.secretValue(ns, "pair-flux", "password"), { timeout: 15_000 }).toBe(first);
    expect(mints()).toBe(before);
  });

  it("a deleted Secret with no sibling comes back at once with a fresh token", async () => {
    const ns = await setup("remint");
    await apply(ns, tokenYaml("solo", {}));
    await waitReady(ns, "solo");
    const first = await kube.secretValue(ns, "solo-token");
    await kube.core.deleteNamespacedSecret({ namespace: ns, name: "solo-token" });
    await expect
      .poll(async () => (await kube.secretValue(ns, "solo-token")) ?? first, { timeout: 15_000 })
      .not.toBe(first);
    expect(fx.github.sim.checkToken((await kube.secretValue(ns, "solo-token")) ?? "").live).toBe(true);
  });

  it("a deleted namespace closes the watch on its App's key Secret", async () => {
    const ns = await setup("keywatch");
    await apply(ns, tokenYaml("kw", {}));
    await waitReady(ns, "kw");
    expect(fx.op.operator.cache.keySecretWatches(ns)).toBe(1);
    expect((await kubectl(["delete", "namespace", ns, "--timeout=60s"])).code).toBe(0);
    await expect.poll(() => fx.op.operator.cache.keySecretWatches(ns), { timeout: 15_000 }).toBe(0);
  });

  it("a spec change re-mints at once and revokes the superseded token after the grace period", async () => {
    const ns = await setup("change");
    await apply(ns, tokenYaml("edit", {}));
    await waitReady(ns, "edit");
    const first = await kube.secretValue(ns, "edit-token");
    await apply(ns, tokenYaml("edit", { permissions: { contents: "read", issues: "read" } }));
    await expect.poll(() => kube.secretValue(ns, "edit-token"), { timeout: 15_000 }).not.toBe(first);
    const second = await kube.secretValue(ns, "edit-token");
    expect(fx.github.sim.checkToken(second ?? "").scope?.permissions).toEqual({
      contents: "read",
      issues: "read",
    });
    await expect.poll(() => fx.github.sim.checkToken(first ?? "").live, { timeout: 15_000 }).toBe(false);
  });

  it("leaves a foreign Secret of the same name untouched, says SecretConflict, and takes the name once it is free", async () => {
    const ns = await setup("conflict");
    await kube.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "mine-token" }, stringData: { token: "hand-made" } },
    });
    const before = new Set(fx.github.sim.state.tokens.keys());
    await apply(ns, tokenYaml("mine", {}));
    await expect
      .poll(async () => ready(await kube.getToken(ns, "mine"))?.reason, { timeout: 15_000 })
      .toBe("SecretConflict");
    expect(await kube.secretValue(ns, "mine-token")).toBe("hand-made");
    // The first pass takes the name to be free and writes create-only: it may mint once, and
    // that token, which no Secret holds, is revoked at once.
    const minted = [...fx.github.sim.state.tokens.keys()].filter((t) => !before.has(t));
    expect(minted.length).toBeLessThanOrEqual(1);
    for (const t of minted) {
      await expect.poll(() => fx.github.sim.checkToken(t).live, { timeout: 15_000 }).toBe(false);
    }
    const events = await kubectl([
      "-n",
      ns,
      "get",
      "events",
      "--field-selector",
      "involvedObject.name=mine",
      "-o",
      "jsonpath={.items[*].reason}",
    ]);
    expect(events.stdout).toContain("SecretConflict");
    await kube.core.deleteNamespacedSecret({ namespace: ns, name: "mine-token" });
    await expect
      .poll(async () => ready(await kube.getToken(ns, "mine"))?.reason, { timeout: 15_000 })
      .toBe("Issued");
    expect(await kube.secretValue(ns, "mine-token")).toMatch(/^ghs_/);
  });

  it("delete → token revoked and Secret gone", async () => {
    const ns = await setup("delete");
    await apply(ns, tokenYaml("gone", {}));
    await waitReady(ns, "gone");
    const token = await kube.secretValue(ns, "gone-token");
    const r = await kubectl(["-n", ns, "delete", "ghat", "gone", "--timeout=30s"]);
    expect(r.code).toBe(0);
    expect(await kube.secret(ns, "gone-token")).toBeUndefined();
    expect(fx.github.sim.checkToken(token ?? "").live).toBe(false);
  });

  it("a restart of the operator mints nothing and writes nothing", async () => {
    const ns = await setup("restart");
    await apply(ns, tokenYaml("keep", {}));
    await waitReady(ns, "keep");
    // The App's status is Verified, which the next operator trusts until its check interval.
    const app = await kubectl(["-n", ns, "wait", "--for=condition=Ready", "githubapp/app", "--timeout=60s"]);
    expect(app.stdout + app.stderr).toContain("condition met");
    const before = await kube.secret(ns, "keep-token");
    await fx.op.stop();
    fx.github.sim.resetCounts();
    const op = await fx.startOperator();
    await op.operator.controller.queue.idle();
    expect(fx.github.sim.counts().total).toBe(0);
    const after = await kube.secret(ns, "keep-token");
    expect(after?.metadata?.resourceVersion).toBe(before?.metadata?.resourceVersion);
  });

  it("200 tokens applied at once all become Ready", async () => {
    const ns = await setup("burst");
    const yaml = Array.from({ length: 200 }, (_, i) => tokenYaml(`t${i}`, {})).join("---\n");
    await apply(ns, yaml);
    const r = await kubectl(
      ["-n", ns, "wait", "--for=condition=Ready", "ghat", "--all", "--timeout=90s"],
      {},
    );
    expect(r.code).toBe(0);
    const list = await kubectl([
      "-n",
      ns,
      "get",
      "secrets",
      "-l",
      "app.kubernetes.io/managed-by=ghat",
      "-o",
      "name",
    ]);
    expect(list.stdout.trim().split("\n")).toHaveLength(200);
  });
  fx.itLeaksNothing();
});

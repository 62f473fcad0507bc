import { CoordinationV1Api } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { kubeConfig, kubectl } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { fastLeaderElection, installationId, ready, tokenYaml } from "./operator.ts";
import { sample } from "./processes.ts";

/**
 * Two operator processes with leader election on a Lease, as two replicas of the Deployment:
 * only the leader reconciles; SIGKILL hands over within the lease; SIGTERM releases it.
 */
describe("leader election, metrics and shutdown with real processes", () => {
  const fx = useOperator({ operatorNamespace: true });
  const { kube } = fx;
  const leaseMs = 4_000;
  const start = () => fx.spawn([...fastLeaderElection, "--revoke-superseded-after", "1s"]);
  const lease = async () =>
    kubeConfig()
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ namespace: fx.opNs, name: "ghat-leader" });

  it("one leader reconciles, a killed leader is replaced within the lease, and nothing is minted twice", async () => {
    const a = start();
    const b = start();
    await expect
      .poll(() => a.logs("Became leader").length + b.logs("Became leader").length, { timeout: 30_000 })
      .toBe(1);
    const [leader, standby] = a.logs("Became leader").length ? [a, b] : [b, a];

    const ns = await fx.withApp("ha");
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenYaml("one", {}) })).code).toBe(0);
    expect(
      (await kubectl(["-n", ns, "wait", "--for=condition=Ready", "ghat/one", "--timeout=30s"])).code,
    ).toBe(0);
    expect(leader.logs("Minted token")).toHaveLength(1);
    expect(standby.logs("Minted token")).toHaveLength(0);

    // The standby is ready too (caches synced) but does not reconcile.
    const standbyStarted = await standby.waitFor("Started ghat");
    expect((await fetch(`http://127.0.0.1:${String(standbyStarted.healthPort)}/readyz`)).status).toBe(200);
    expect(sample(await standby.metrics(), "ghat_leader")).toBe(0);
    expect(sample(await leader.metrics(), "ghat_leader")).toBe(1);

    const mintsBefore = fx.github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0;
    const killedAt = Date.now();
    leader.kill("SIGKILL");
    await standby.waitFor("Became leader", 20_000);
    const handover = Date.now() - killedAt;
    expect(handover).toBeLessThanOrEqual(leaseMs + 3_000);

    // The new leader keeps the valid token (restart safety) and serves new ones.
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenYaml("two", {}) })).code).toBe(0);
    expect(
      (await kubectl(["-n", ns, "wait", "--for=condition=Ready", "ghat/two", "--timeout=30s"])).code,
    ).toBe(0);
    expect((fx.github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0) - mintsBefore).toBe(
      1,
    );
    expect(ready(await kube.getToken(ns, "one"))?.status).toBe("True");

    // Metrics of the new leader: every family, with sane values.
    const m = await standby.metrics();
    const exp = Date.parse((await kube.getToken(ns, "two"))?.status?.expiresAt ?? "") / 1000;
    expect(sample(m, "ghat_token_expiry_timestamp_seconds", { namespace: ns, name: "two" })).toBe(exp);
    expect(sample(m, "ghat_token_refreshes_total", { result: "success" })).toBeGreaterThanOrEqual(1);
    expect(
      sample(m, "ghat_github_requests_total", {
        route: "apps/create-installation-access-token",
        status: "201",
      }),
    ).toBe(1);
    expect(
      sample(m, "ghat_github_request_duration_seconds_count", {
        route: "apps/create-installation-access-token",
      }),
    ).toBe(1);
    expect(sample(m, "ghat_reconcile_duration_seconds_count")).toBeGreaterThanOrEqual(2);
    // The new leader re-checks every token it can see (other files' too): its queue drains.
    await expect
      .poll(async () => sample(await standby.metrics(), "ghat_workqueue_depth"), { timeout: 30_000 })
      .toBe(0);
    expect(
      sample(m, "ghat_kube_requests_total", { verb: "patch", resource: "secrets" }),
    ).toBeGreaterThanOrEqual(1);
    expect(sample(m, "ghat_kube_requests_total", { verb: "get", resource: "leases" })).toBeGreaterThanOrEqual(
      1,
    );
    expect(sample(m, "ghat_leader")).toBe(1);

    // A revocation reports the installation's rate-limit headroom.
    expect((await kubectl(["-n", ns, "delete", "ghat", "two", "--timeout=30s"])).code).toBe(0);
    await expect
      .poll(async () =>
        sample(await standby.metrics(), "ghat_github_rate_limit_remaining", {
          installation: String(installationId),
        }),
      )
      .toBeGreaterThan(0);
    expect(sample(await standby.metrics(), "ghat_token_revocations_total", { result: "success" })).toBe(1);

    // SIGTERM: finish, release the lease, exit 0 within the bound.
    const termAt = Date.now();
    standby.kill("SIGTERM");
    expect(await standby.exited).toBe(0);
    expect(Date.now() - termAt).toBeLessThan(10_000);
    expect((await lease()).spec?.holderIdentity ?? "").toBe("");
    expect(standby.logs("Released leader lease")).toHaveLength(1);
  });
  fx.itLeaksNothing({ name: "leaks no token or key into logs, events, status or metrics" });
});

import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { FaultRule } from "../../src/sim/faults.ts";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import type { Simulator } from "../../src/sim/simulator.ts";
import { controlPlane, kubectl } from "../support/cluster.ts";
import { type Monitor, monitorTokens, recovered } from "./faultkit.ts";
import { useOperator, writeLocal } from "./fixture.ts";
import { appId, installationId, ready, tokenYaml } from "./operator.ts";
import type { OperatorProcess } from "./processes.ts";

/**
 * The fault matrix (docs/reliability.md): every fault GitHub or Kubernetes can throw at ghat,
 * on the real control plane and the simulator, with the operator in its own process behind a
 * TCP proxy to the API server. Tokens live 20 s; each refreshes 12 s before expiry and must
 * keep 6 s. For every fault a Monitor reads the Secrets the way a consumer does and records
 * any violation of the invariants; each test then states its recovery bound and call bound.
 * Measured figures go to .local/fault-matrix.json.
 */
const mintRoute = "apps/create-installation-access-token";
const minMs = 6_000;
const policy = { refreshBefore: "12s", minRemainingLifetime: "6s" };
/** The retry floor for this policy (a tenth of the minimum lifetime, at least 1 s). */
const floorMs = 1_000;
/** How late a refresh may land after GitHub answers again: one retry floor plus a reconcile. */
const graceMs = floorMs + 1_000;
/** A refresh retry lands within this after a fault clears: the retry cap here, plus a reconcile. */
const transientBoundMs = 6_000;
/** --github-timeout here. */
const githubTimeoutMs = 2_000;
/** --secondary-rate-limit-wait here (GitHub's minute by default; the unit tests hold that). */
const secondaryWaitMs = 15_000;
const scopes = [{ contents: "read" }, { issues: "write" }, { pull_requests: "read" }];

describe("fault matrix", () => {
  const figures: Record<string, unknown>[] = [];
  const fx = useOperator({
    tokenLifetimeSeconds: 20,
    operatorNamespace: true,
    proxy: true,
    afterStop: async () => writeLocal("fault-matrix.json", `${JSON.stringify(figures, null, 2)}\n`),
  });
  const { kube, procs } = fx;
  let op: OperatorProcess;

  /** An operator process; its API traffic goes through the proxy unless `direct`. */
  const startOperator = (direct = false) =>
    fx.spawn(
      [
        "--leader-elect",
        "true",
        "--lease-duration",
        "8s",
        "--renew-deadline",
        "6s",
        "--retry-period",
        "1s",
        "--revoke-superseded-after",
        "3s",
        "--github-timeout",
        `${githubTimeoutMs / 1000}s`,
        "--terminal-retry",
        "2s",
        "--secondary-rate-limit-wait",
        `${secondaryWaitMs / 1000}s`,
      ],
      { direct },
    );
  const mints = () => fx.github.sim.counts().byRoute[mintRoute] ?? 0;
  const answered = (status: number) => fx.github.sim.counts().byRouteStatus[`${mintRoute} ${status}`] ?? 0;

  beforeAll(() => {
    seedInstallation = structuredClone(fx.github.sim.state.installations.get(installationId));
    op = startOperator();
  });

  let current: { ns: string; monitor: Monitor } | undefined;
  let seedInstallation: Parameters<Simulator["state"]["addInstallation"]>[0] | undefined;
  afterEach(async () => {
    writeLocal("faults-operator.log", procs.flatMap((p) => p.lines).join("\n"));
    // Whatever a test left behind, failed or not: the next one starts from a clean GitHub.
    fx.github.sim.faults.clear();
    fx.github.sim.setClockOffset(0);
    fx.proxy.restore();
    const state = fx.github.sim.state;
    for (const id of [...state.installations.keys()]) if (id !== installationId) state.removeInstallation(id);
    if (!state.installations.has(installationId) && seedInstallation) state.addInstallation(seedInstallation);
    state.unsuspendInstallation(installationId);
    state.replaceAppPublicKeys(appId, [fx.github.keys.publicKeyPem]);
    if (!current) return;
    await current.monitor.stop();
    // Its tokens would go on rotating (and meet the next test's faults): delete and wait.
    await kubectl(["delete", "namespace", current.ns, "--timeout=60s"]);
    current = undefined;
  });

  /** A namespace with the App and three tokens of distinct scopes, all Ready, watched by a Monitor. */
  async function rig(prefix: string) {
    const ns = await fx.withApp(prefix.replace(/[^a-z0-9]+/g, "-"));
    const names = scopes.map((_, i) => `t${i}`);
    for (const [i, name] of names.entries()) {
      const yaml = tokenYaml(name, { permissions: scopes[i], refreshPolicy: policy });
      expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: yaml })).code).toBe(0);
    }
    for (const name of names) {
      const r = await kubectl(["-n", ns, "wait", "--for=condition=Ready", `ghat/${name}`, "--timeout=60s"]);
      expect(r.code, r.stderr).toBe(0);
    }
    const monitor = monitorTokens(kube, fx.github.sim, ns, names, minMs);
    monitor.start();
    current = { ns, monitor };
    const recover = (timeout: number) => recovered(kube, fx.github.sim, ns, names, minMs, timeout);
    return { ns, names, monitor, recover };
  }

  /** The invariants every fault test ends with. */
  async function settle(
    fault: string,
    r: Awaited<ReturnType<typeof rig>>,
    figure: Record<string, unknown>,
    process = op,
  ): Promise<void> {
    // The monitor has read every Secret at least once (reads time out while etcd or the API
    // server is down, so after such a fault its first reads may come only now).
    const unread = () => r.names.filter((name) => (r.monitor.samples.get(`${name}-token`) ?? 0) === 0);
    await expect.poll(unread, { timeout: 15_000, interval: 200 }).toEqual([]);
    await r.monitor.stop();
    expect(process.proc.exitCode, "the operator keeps running").toBeNull();
    expect(r.monitor.violations, `${fault}:\n${r.monitor.violations.join("\n")}`).toEqual([]);
    figures.push({ fault, ...figure });
  }

  /** Reason of each token's Ready condition. */
  const reasons = async (ns: string, names: string[]) =>
    Promise.all(names.map(async (n) => ready(await kube.getToken(ns, n))?.reason));

  /**
   * A fault on the mint route held until every token has failed at least twice (each met its
   * refresh and retried), then cleared: the old token stays, retries are bounded, and every
   * token is fresh again within the bound.
   */
  async function transient(label: string, fault: FaultRule["fault"], failed: () => number) {
    const r = await rig(label);
    const before = { attempts: mints(), failed: failed() };
    const from = Date.now();
    fx.github.sim.faults.add({ route: mintRoute, fault });
    r.monitor.outage();
    await expect
      .poll(() => failed() - before.failed, { timeout: 60_000, interval: 100 })
      .toBeGreaterThanOrEqual(2 * r.names.length);
    fx.github.sim.faults.clear();
    // A request on the wire when a latency fault clears may still time out (--github-timeout).
    r.monitor.restored(graceMs + (fault.kind === "latency" ? githubTimeoutMs : 0));
    const heldMs = Date.now() - from;
    const attempts = mints() - before.attempts;
    const recoveryMs = await r.recover(transientBoundMs);
    // No hot loop: retries are at least half the retry floor apart, per token.
    expect(attempts).toBeLessThanOrEqual(r.names.length * (Math.ceil(heldMs / (floorMs / 2)) + 1));
    await settle(label, r, { heldMs, attemptsDuringFault: attempts, recoveryMs, boundMs: transientBoundMs });
  }

  it("GitHub 5xx bursts: the old token stays, retries back off, all fresh within the bound", async () => {
    await transient("5xx burst", { kind: "status", status: 502 }, () => answered(502));
  });

  it("GitHub timeouts (answers slower than --github-timeout): same, no request piles up", async () => {
    await transient("timeout", { kind: "latency", ms: 4_000 }, () => mints());
    // The late answers minted tokens nobody received: GitHub does the same; they expire unused.
    await expect.poll(() => fx.github.sim.inflight(), { timeout: 10_000 }).toBe(0);
  });

  it("connection resets: same", async () => {
    await transient("connection reset", { kind: "reset" }, () => answered(0));
  });

  it("primary rate limit: one attempt per token until the reset time, fresh right after it", async () => {
    const r = await rig("primary");
    const resetAt = Math.ceil((fx.github.sim.now() + 12_000) / 1000);
    const before = { attempts: mints(), limited: answered(403) };
    fx.github.sim.faults.add({ route: mintRoute, fault: { kind: "primaryRateLimit", resetAt } });
    r.monitor.outage();
    await expect
      .poll(() => answered(403) - before.limited, { timeout: 30_000, interval: 100 })
      .toBeGreaterThanOrEqual(r.names.length);
    // Everything asked before the reset time (a retry at the reset itself is right on time).
    await expect
      .poll(() => fx.github.sim.now(), { timeout: 30_000, interval: 50 })
      .toBeGreaterThanOrEqual(resetAt * 1000 - 300);
    const attemptsBeforeReset = mints() - before.attempts;
    await expect
      .poll(() => fx.github.sim.now(), { timeout: 5_000, interval: 50 })
      .toBeGreaterThanOrEqual(resetAt * 1000);
    fx.github.sim.faults.clear();
    r.monitor.restored(graceMs);
    expect(attemptsBeforeReset, "nothing retried before the reset time").toBe(r.names.length);
    expect(await reasons(r.ns, r.names)).toEqual(r.names.map(() => "RateLimited"));
    const recoveryMs = await r.recover(transientBoundMs);
    await settle("primary rate limit", r, {
      attemptsDuringFault: attemptsBeforeReset,
      recoveryMs,
      boundMs: transientBoundMs,
    });
  });

  it("secondary rate limit with retry-after: nothing before retry-after, fresh right after it", async () => {
    const r = await rig("secondary");
    const before = { attempts: mints(), limited: answered(403) };
    const from = Date.now();
    fx.github.sim.faults.add({
      route: mintRoute,
      fault: { kind: "secondaryRateLimit", retryAfterSeconds: 5 },
    });
    r.monitor.outage();
    await expect
      .poll(() => answered(403) - before.limited, { timeout: 30_000, interval: 100 })
      .toBeGreaterThanOrEqual(2 * r.names.length);
    fx.github.sim.faults.clear();
    r.monitor.restored(5_000 + graceMs);
    const heldMs = Date.now() - from;
    const attempts = mints() - before.attempts;
    // At most one attempt per token per retry-after.
    expect(attempts).toBeLessThanOrEqual(r.names.length * (Math.ceil(heldMs / 5_000) + 1));
    const recoveryMs = await r.recover(5_000 + transientBoundMs);
    await settle("secondary rate limit, retry-after 5 s", r, {
      heldMs,
      attemptsDuringFault: attempts,
      recoveryMs,
      boundMs: 5_000 + transientBoundMs,
    });
  });

  it("secondary rate limit without retry-after: waits --secondary-rate-limit-wait (GitHub: a minute), then recovers", async () => {
    const r = await rig("secondary-bare");
    const before = { attempts: mints(), limited: answered(403) };
    fx.github.sim.faults.add({ route: mintRoute, fault: { kind: "secondaryRateLimit" } });
    r.monitor.outage();
    await expect
      .poll(() => answered(403) - before.limited, { timeout: 30_000, interval: 100 })
      .toBeGreaterThanOrEqual(r.names.length);
    const firstLimitedAt = Date.now();
    expect(answered(403) - before.limited, "one limited attempt per token").toBe(r.names.length);
    fx.github.sim.faults.clear();
    // GitHub answers again, but ghat was told to wait: the wait is the fault's length.
    const recoveryMs = await r.recover(secondaryWaitMs + 20_000);
    r.monitor.restored(graceMs);
    expect(Date.now() - firstLimitedAt).toBeGreaterThanOrEqual(secondaryWaitMs - 2_000);
    // One limited attempt and one successful mint per token: nothing in between.
    expect(mints() - before.attempts).toBeLessThanOrEqual(2 * r.names.length + r.names.length);
    await settle("secondary rate limit, no retry-after", r, {
      recoveryMs,
      boundMs: secondaryWaitMs + 20_000,
    });
  });

  it("401 replication lag after a mint: no extra mint, Ready throughout, the new token works once replicated", async () => {
    const r = await rig("lag");
    const before = mints();
    fx.github.sim.faults.add({
      route: mintRoute,
      fault: { kind: "replicationLag", ms: 3_000 },
      count: r.names.length,
    });
    await expect.poll(() => fx.github.sim.faults.list().length, { timeout: 30_000, interval: 100 }).toBe(0);
    // Every token rotated once into a lagging token; none minted twice for it.
    const lagging = await Promise.all(r.names.map((n) => kube.secretValue(r.ns, `${n}-token`)));
    expect(mints() - before).toBeLessThanOrEqual(r.names.length + 1);
    expect(await reasons(r.ns, r.names)).toEqual(r.names.map(() => "Issued"));
    await expect
      .poll(() => lagging.every((t) => fx.github.sim.checkToken(t ?? "").live), { timeout: 5_000 })
      .toBe(true);
    const recoveryMs = await r.recover(transientBoundMs);
    await settle("401 replication lag", r, { recoveryMs, boundMs: transientBoundMs });
  });

  for (const [label, offsetMs] of [
    ["GitHub's clock 5 min ahead", 5 * 60_000],
    ["GitHub's clock 5 min behind", -5 * 60_000],
  ] as const) {
    it(`clock skew: ${label}: JWTs are accepted and refresh keeps the minimum lifetime`, async () => {
      // A skew is there from the start (a jump would expire every token at once).
      fx.github.sim.setClockOffset(offsetMs);
      const r = await rig(offsetMs > 0 ? "skew-ahead" : "skew-behind");
      const before = { attempts: mints(), created: answered(201) };
      try {
        // Two rotations of every token under the skew.
        await expect
          .poll(() => answered(201) - before.created, { timeout: 60_000, interval: 200 })
          .toBeGreaterThanOrEqual(2 * r.names.length);
        const attempts = mints() - before.attempts;
        // At most one refused JWT (the clock lesson) per token before GitHub's time is learned.
        expect(attempts - (answered(201) - before.created)).toBeLessThanOrEqual(r.names.length);
        const recoveryMs = await r.recover(transientBoundMs);
        await settle(`clock skew ${offsetMs > 0 ? "+" : "-"}5 min`, r, {
          recoveryMs,
          attemptsDuringFault: attempts,
        });
      } finally {
        fx.github.sim.setClockOffset(0);
      }
    });
  }

  it("installation suspended: InstallationSuspended, slow retries, fresh within the terminal retry after unsuspend", async () => {
    const r = await rig("suspended");
    const before = mints();
    const from = Date.now();
    fx.github.sim.state.suspendInstallation(installationId, new Date(fx.github.sim.now()));
    r.monitor.outage();
    try {
      await expect
        .poll(() => reasons(r.ns, r.names), { timeout: 30_000, interval: 200 })
        .toEqual(r.names.map(() => "InstallationSuspended"));
    } finally {
      fx.github.sim.state.unsuspendInstallation(installationId);
    }
    r.monitor.restored(2_000);
    const heldMs = Date.now() - from;
    const attempts = mints() - before;
    // --terminal-retry 2s: one attempt per token per 2 s at most, not a hot loop.
    expect(attempts).toBeLessThanOrEqual(r.names.length * (Math.ceil(heldMs / 2_000) + 2));
    const recoveryMs = await r.recover(2_000 + transientBoundMs);
    await settle("installation suspended", r, {
      heldMs,
      attemptsDuringFault: attempts,
      recoveryMs,
      boundMs: 8_000,
    });
  });

  it("installation deleted, then the App installed again (a new id): found again by owner", async () => {
    const r = await rig("uninstalled");
    const inst = fx.github.sim.state.installations.get(installationId);
    expect(inst).toBeDefined();
    const before = mints();
    const from = Date.now();
    fx.github.sim.state.removeInstallation(installationId);
    r.monitor.outage();
    const reinstalled = installationId + 1;
    try {
      await expect
        .poll(() => reasons(r.ns, r.names), { timeout: 30_000, interval: 200 })
        .toEqual(r.names.map(() => "InstallationNotFound"));
    } finally {
      if (inst) fx.github.sim.state.addInstallation({ ...inst, id: reinstalled });
    }
    r.monitor.restored(2_000);
    const heldMs = Date.now() - from;
    const recoveryMs = await r.recover(2_000 + transientBoundMs);
    // The next mint of each token (at its refresh time) comes from the new installation.
    for (const n of r.names)
      await expect
        .poll(async () => (await kube.getToken(r.ns, n))?.status?.installationId, { timeout: 20_000 })
        .toBe(reinstalled);
    const attempts = mints() - before;
    await settle("installation deleted and reinstalled", r, {
      heldMs,
      attemptsDuringFault: attempts,
      recoveryMs,
      boundMs: 8_000,
    });
  });

  it("App key rotated: in the right order nothing fails; GitHub first, the new key Secret fixes it at once", async () => {
    const r = await rig("keys");
    const keySecret = async (pem: string) =>
      kube.core.replaceNamespacedSecret({
        namespace: r.ns,
        name: "app-key",
        body: { metadata: { name: "app-key" }, stringData: { "private-key.pem": pem } },
      });
    // The documented order: add the new key on GitHub, update the Secret, delete the old key.
    const second = generateAppKeyPair();
    const rejectedBefore = answered(401);
    fx.github.sim.state.addAppPublicKey(appId, second.publicKeyPem);
    await keySecret(second.privateKeyPkcs1Pem);
    // "Wait for the next refresh": by then the operator reads the new key.
    const updated = answered(201);
    await expect
      .poll(() => answered(201) - updated, { timeout: 30_000, interval: 200 })
      .toBeGreaterThanOrEqual(r.names.length);
    fx.github.sim.state.replaceAppPublicKeys(appId, [second.publicKeyPem]);
    const created = answered(201);
    await expect
      .poll(() => answered(201) - created, { timeout: 30_000, interval: 200 })
      .toBeGreaterThanOrEqual(r.names.length);
    expect(answered(401) - rejectedBefore, "no JWT refused in the documented order").toBe(0);

    // The wrong order: GitHub drops the key the Secret still holds.
    const third = generateAppKeyPair();
    fx.github.sim.state.replaceAppPublicKeys(appId, [third.publicKeyPem]);
    r.monitor.outage();
    await expect
      .poll(() => reasons(r.ns, r.names), { timeout: 30_000, interval: 200 })
      .toEqual(r.names.map(() => "JWTRejected"));
    const fixedAt = Date.now();
    await keySecret(third.privateKeyPkcs1Pem);
    r.monitor.restored(graceMs);
    const recoveryMs = await r.recover(transientBoundMs);
    expect(Date.now() - fixedAt).toBeLessThan(transientBoundMs);
    await settle("App key rotated", r, { recoveryMs, boundMs: transientBoundMs });
  });

  it("kube-apiserver restarted: the operator stays up, re-watches, and every token stays fresh", async () => {
    const r = await rig("apiserver");
    const before = mints();
    const from = Date.now();
    r.monitor.outage();
    await controlPlane.restartApiServer();
    const downMs = Date.now() - from;
    r.monitor.restored(graceMs);
    const recoveryMs = await r.recover(30_000);
    // Still watching: a hand-deleted Secret is restored.
    r.monitor.deletedByHand("t0-token");
    await kube.core.deleteNamespacedSecret({ namespace: r.ns, name: "t0-token" });
    r.monitor.outage();
    await expect.poll(() => kube.secretValue(r.ns, "t0-token"), { timeout: 15_000 }).toBeTruthy();
    r.monitor.restored(graceMs);
    await settle("kube-apiserver restart", r, {
      downMs,
      recoveryMs,
      attempts: mints() - before,
      boundMs: 30_000,
    });
  });

  it("etcd restarted: the same", async () => {
    const r = await rig("etcd");
    const from = Date.now();
    r.monitor.outage();
    await controlPlane.restartEtcd();
    const downMs = Date.now() - from;
    r.monitor.restored(graceMs);
    const recoveryMs = await r.recover(30_000);
    r.monitor.deletedByHand("t1-token");
    await kube.core.deleteNamespacedSecret({ namespace: r.ns, name: "t1-token" });
    r.monitor.outage();
    await expect.poll(() => kube.secretValue(r.ns, "t1-token"), { timeout: 15_000 }).toBeTruthy();
    r.monitor.restored(graceMs);
    await settle("etcd restart", r, { downMs, recoveryMs, boundMs: 30_000 });
  });

  it("watch connections dropped: re-established, so a change right after is still seen", async () => {
    const r = await rig("watchdrop");
    for (let round = 0; round < 3; round++) {
      expect(fx.proxy.connections).toBeGreaterThan(0);
      fx.proxy.dropAll();
      const from = Date.now();
      // A hand-deleted Secret right after the drop: only a live watch (or a re-list) brings it back.
      const victim = `t${round}-token`;
      r.monitor.outage();
      r.monitor.deletedByHand(victim);
      await kube.core.deleteNamespacedSecret({ namespace: r.ns, name: victim });
      await expect.poll(() => kube.secretValue(r.ns, victim), { timeout: 15_000 }).toBeTruthy();
      r.monitor.restored(graceMs);
      figures.push({ fault: `watch drop round ${round}`, restoredMs: Date.now() - from });
    }
    const recoveryMs = await r.recover(transientBoundMs);
    await settle("watch connections dropped", r, { recoveryMs, boundMs: 15_000 });
  });

  it("operator SIGKILLed in the middle of a mint: the next one keeps the old token and mints once", async () => {
    const r = await rig("sigkill");
    fx.github.sim.faults.add({ route: mintRoute, fault: { kind: "latency", ms: 1_500 }, count: 1 });
    await expect.poll(() => fx.github.sim.inflight(), { timeout: 30_000, interval: 20 }).toBe(1);
    r.monitor.outage();
    op.kill("SIGKILL");
    await op.exited;
    const killedAt = Date.now();
    op = startOperator();
    await op.waitFor("Became leader", 30_000);
    const takeoverMs = Date.now() - killedAt;
    r.monitor.restored(graceMs);
    const recoveryMs = await r.recover(transientBoundMs);
    // The killed mint was answered to no one (GitHub minted it anyway; it expires unused);
    // the new process minted each token once, and minted it again only at that token's refresh
    // time (tokens here rotate every 8 s, so a slow takeover may well see a second rotation).
    for (const name of r.names) {
      const minted = op.logs("Minted token").filter((l) => l.namespace === r.ns && l.name === name);
      expect(minted.length, name).toBeGreaterThan(0);
      for (const [i, next] of minted.slice(1).entries()) {
        const due = Date.parse(String(minted[i]?.refreshAt));
        expect(Number(next.time), `${name}: minted again before its refresh time`).toBeGreaterThanOrEqual(
          due - 1_000,
        );
      }
    }
    await settle("SIGKILL mid-mint", r, { takeoverMs, recoveryMs, boundMs: 8_000 + transientBoundMs });
  });

  it("leader killed or cut off: the standby takes over within the lease, tokens stay fresh", async () => {
    const r = await rig("leader");
    const standby = startOperator();
    await standby.waitFor("Started ghat", 30_000);
    // SIGKILL: the lease runs out (8 s) and the standby takes it.
    r.monitor.outage();
    op.kill("SIGKILL");
    const killedAt = Date.now();
    await standby.waitFor("Became leader", 20_000);
    const killTakeoverMs = Date.now() - killedAt;
    r.monitor.restored(graceMs);
    expect(killTakeoverMs).toBeLessThanOrEqual(8_000 + 3_000);
    let recoveryMs = await r.recover(transientBoundMs);
    // Cut off: the leader (all its API traffic goes through the proxy) cannot renew; it steps
    // down within the renew deadline, and a second replica with a working connection takes
    // over once the lease runs out. Reconnected, the old leader stays a standby.
    const next = startOperator(true);
    await next.waitFor("Started ghat", 30_000);
    r.monitor.outage();
    fx.proxy.cut();
    const cutAt = Date.now();
    await standby.waitFor("Lost leader lease", 15_000);
    const steppedDownMs = Date.now() - cutAt;
    await next.waitFor("Became leader", 20_000);
    const cutTakeoverMs = Date.now() - cutAt;
    fx.proxy.restore();
    r.monitor.restored(graceMs);
    recoveryMs = await r.recover(transientBoundMs);
    expect(steppedDownMs).toBeLessThanOrEqual(6_000 + 3_000);
    // Two more rotations of every token: all by the new leader, none by the old one.
    const oldMints = standby.logs("Minted token").length;
    const newMints = next.logs("Minted token").length;
    await expect
      .poll(() => next.logs("Minted token").length - newMints, { timeout: 30_000, interval: 200 })
      .toBeGreaterThanOrEqual(2 * r.names.length);
    expect(standby.logs("Minted token").length).toBe(oldMints);
    expect(standby.logs("Became leader")).toHaveLength(1);
    expect(standby.proc.exitCode).toBeNull();
    standby.kill("SIGTERM");
    expect(await standby.exited).toBe(0);
    op = next;
    await settle(
      "leader killed / cut off",
      r,
      { killTakeoverMs, cutTakeoverMs, steppedDownMs, recoveryMs },
      next,
    );
  });

  fx.itLeaksNothing({
    name: "leaks no token or key into any operator's logs, events, status or spec",
    minLines: 100,
  });
});

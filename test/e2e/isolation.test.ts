import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { group, version } from "../../src/api/meta.ts";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { type Simulator, startSimulator } from "../../src/sim/simulator.ts";
import { type KubectlResult, kubectl, newNamespace } from "../support/cluster.ts";
import { useOperator, writeLocal } from "./fixture.ts";
import { describeReady as describeReadyOf, leaks, ready, settleReady, type TokenObject } from "./operator.ts";
import {
  ConnectProxy,
  CountingServer,
  created,
  endlessBody,
  HostileGitHub,
  htmlError,
  isoSeconds,
  redirect,
  SupervisedOperator,
  VictimMonitor,
} from "./tenantkit.ts";

/**
 * Hostile tenants. One operator serves a victim tenant and, one after the other, attackers
 * who control only their own namespace: GitHubAppTokens, their own GitHubApp and key Secret,
 * their own Secrets, and servers they run themselves (on 127.0.0.1 here). The operator runs
 * as in a pod: its own process in a 384 MiB memory cgroup, restarted when it dies.
 *
 * For every attack: the victim's token still rotates on time (within `latenessBoundMs` of the
 * refresh time its Secret announced), the operator never died (no OOM kill), the attacker
 * caused a bounded number of mints, and the attacker sees either a refusal from `kubectl
 * apply` naming the field or a Ready condition that says what is wrong.
 */

/** Tokens live 30 s; the victim refreshes 15 s before expiry: a rotation every ~15 s. */
const lifetimeSeconds = 30;
const victimPolicy = { refreshBefore: "15s", minRemainingLifetime: "8s" };
/** A refresh may land this late after its refresh-at (a reconcile, a mint, a write, a sample). */
const latenessBoundMs = 10_000;
/** Long enough for one victim rotation (period ~15 s) plus the bound. */
const rotationWaitMs = 30_000;
const memoryLimitBytes = 384 << 20;
/** How long each attack is watched once it is in place. */
const observeMs = 20_000;
const appId = 4242;
const acme = 9001;
const otherOrg = 5002;
const repo = { app1: 601, app2: 602, app3: 603, legacy: 700, otherApp1: 701 };
const runLabel = `isolation-${process.pid}`;

describe("hostile tenant", () => {
  const keys = generateAppKeyPair();
  let sim: Simulator;
  let op: SupervisedOperator;
  let victim: VictimMonitor;
  let hostile: HostileGitHub;
  let internal: CountingServer;
  let proxy: ConnectProxy;
  let victimNs: string;
  const clusterApp = `tenants-${process.pid}`;
  const fx = useOperator({
    github: async () => {
      sim = await startSimulator({
        tokenLifetimeSeconds: lifetimeSeconds,
        seed: {
          apps: [
            {
              id: appId,
              clientId: "Iv23liTenants",
              slug: "tenants",
              owner: "acme",
              publicKeys: [keys.publicKeyPem],
            },
          ],
          installations: [
            {
              id: acme,
              appId,
              account: { login: "acme", type: "Organization" },
              permissions: { contents: "write", metadata: "read", issues: "write" },
            },
            {
              id: otherOrg,
              appId,
              account: { login: "other-org", type: "Organization" },
              permissions: { contents: "write", metadata: "read", issues: "write" },
            },
          ],
          repositories: [
            { id: repo.app1, owner: "acme", name: "app-1" },
            { id: repo.app2, owner: "acme", name: "app-2" },
            { id: repo.app3, owner: "acme", name: "app-3" },
            // acme/legacy-tool was transferred to other-org, which also has an app-1.
            {
              id: repo.legacy,
              owner: "other-org",
              name: "legacy-tool",
              transferredFrom: ["acme/legacy-tool"],
            },
            { id: repo.otherApp1, owner: "other-org", name: "app-1" },
          ],
        },
      });
      return { sim, keys };
    },
    operatorNamespace: true,
    afterStop: () =>
      kubectl(["delete", "clustergithubapps", "-l", `isolation.test/run=${runLabel}`, "--wait=false"]),
  });
  const { kube } = fx;

  beforeAll(async () => {
    [hostile, internal, proxy] = await Promise.all([
      HostileGitHub.start(),
      CountingServer.start(),
      ConnectProxy.start(),
    ]);
    await kube.createKeySecret(fx.opNs, "tenants-key", keys.privateKeyPkcs1Pem);
    const cluster = {
      apiVersion: `${group}/${version}`,
      kind: "ClusterGitHubApp",
      metadata: { name: clusterApp, labels: { "isolation.test/run": runLabel } },
      spec: {
        appId,
        privateKeySecretRef: { name: "tenants-key" },
        baseUrl: sim.url,
        policy: {
          // victim-* and attacker-* namespaces of this run (names carry a random suffix).
          namespaces: {
            selector: {
              matchLabels: { "isolation.test/run": runLabel },
              matchExpressions: [
                { key: "isolation.test/tenant", operator: "In", values: ["victim", "attacker"] },
              ],
            },
          },
          installations: { owners: ["acme"] },
          repositories: ["acme/app-*"],
          maxPermissions: { contents: "write", metadata: "read", issues: "write" },
        },
      },
    };
    const applied = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(cluster) });
    expect(applied.code, applied.stderr).toBe(0);

    op = SupervisedOperator.start(
      fx.processFlags([
        "--revoke-superseded-after",
        "3s",
        "--github-timeout",
        "5s",
        "--terminal-retry",
        "10s",
        // ghat's own mint limits as shipped (localFlags lifts them for other suites), except
        // the per-token interval, shortened to fit the victim's 30 s tokens.
        "--min-mint-interval",
        "10s",
        "--app-mint-rate",
        "120",
        "--app-mint-burst",
        "200",
        "--installation-mint-rate",
        "60",
        "--installation-mint-burst",
        "100",
      ]),
      { limitBytes: memoryLimitBytes, name: `ghat-isolation-${process.pid}` },
    );

    victimNs = await tenantNamespace("victim-1", "victim");
    const v = await apply(
      victimNs,
      token("victim", { repositories: ["app-1"], refreshPolicy: victimPolicy }),
    );
    expect(v.code, v.stderr).toBe(0);
    const waited = await kubectl([
      "-n",
      victimNs,
      "wait",
      "--for=condition=Ready",
      "ghat/victim",
      "--timeout=90s",
    ]);
    expect(waited.code, `${waited.stderr}\n${op.lines().slice(-20).join("\n")}`).toBe(0);
    victim = new VictimMonitor(kube, sim, victimNs, "victim-token");
    victim.start();
  });

  afterAll(async () => {
    await victim?.stop();
    writeLocal("isolation-operator.log", op?.lines().join("\n") ?? "");
    writeLocal("isolation-figures.json", `${JSON.stringify(figures, null, 2)}\n`);
    writeLocal(
      "isolation-victim.json",
      `${JSON.stringify({ rotations: victim?.rotations, problems: victim?.problems, exits: op?.exits }, null, 2)}\n`,
    );
    await op?.stop();
    await Promise.all([hostile?.close(), internal?.close(), proxy?.close()]);
  });

  // -------------------------------------------------------------------------------------------
  // Helpers

  /** Attacker namespaces of the running test: deleted after it, so their tokens stop acting. */
  const attackers: string[] = [];
  afterEach(async () => {
    for (const ns of attackers.splice(0)) await kubectl(["delete", "namespace", ns, "--wait=false"]);
  });

  /** A fresh namespace named `<prefix>-…`, labelled so the ClusterGitHubApp's policy allows it. */
  async function tenantNamespace(prefix: string, role: "victim" | "attacker"): Promise<string> {
    const ns = await newNamespace(prefix);
    if (role === "attacker") attackers.push(ns);
    const r = await kubectl([
      "label",
      "namespace",
      ns,
      `isolation.test/run=${runLabel}`,
      `isolation.test/tenant=${role}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    return ns;
  }

  const apply = (namespace: string, obj: unknown): Promise<KubectlResult> =>
    kubectl(["-n", namespace, "apply", "-f", "-"], { input: JSON.stringify(obj) });

  /** A GitHubAppToken on the shared ClusterGitHubApp (acme, repository app-2 unless overridden). */
  function token(name: string, spec: Record<string, unknown> = {}) {
    return {
      apiVersion: `${group}/${version}`,
      kind: "GitHubAppToken",
      metadata: { name },
      spec: {
        appRef: { kind: "ClusterGitHubApp", name: clusterApp },
        installation: { owner: "acme" },
        permissions: { contents: "read" },
        repositories: ["app-2"],
        secrets: [{ name: `${name}-token` }],
        // GitHub's defaults (20m / 10m) on 30 s tokens would mint at every retry.
        refreshPolicy: victimPolicy,
        ...spec,
      },
    };
  }

  /** The attacker's own GitHubApp (and key Secret) in its namespace. */
  async function tenantApp(namespace: string, name: string, spec: Record<string, unknown>) {
    return apply(namespace, {
      apiVersion: `${group}/${version}`,
      kind: "GitHubApp",
      metadata: { name },
      spec: { appId, privateKeySecretRef: { name: "own-key" }, ...spec },
    });
  }

  /** Tokens the simulator issued since `since` (its ms) that reach repository `repoId`. */
  const mintsFor = (repoId: number, since: number) =>
    [...sim.state.tokens.values()].filter((t) => t.issuedAt >= since && t.repositoryIds?.includes(repoId))
      .length;

  interface Attack {
    mark: number;
    since: number;
    restarts: number;
    /** "refused at admission" or "accepted" (for the figures). */
    path?: string;
  }
  const figures: Record<string, unknown>[] = [];
  function begin(): Attack {
    op.resetPeak();
    return { mark: victim.mark(), since: sim.now(), restarts: op.restarts };
  }

  /**
   * What every attack ends with: the operator never died, the attacker's mints (repository
   * app-2 unless said otherwise) stayed under `maxMints`, and the victim rotated on time.
   */
  async function isolated(a: Attack, maxMints: number, repoId = repo.app2): Promise<void> {
    expect.soft(op.restarts - a.restarts, `the operator died:\n${op.describeExits()}`).toBe(0);
    expect.soft(mintsFor(repoId, a.since), "mints the attacker caused").toBeLessThanOrEqual(maxMints);
    try {
      await victim.expectOnTime(a.mark, latenessBoundMs, rotationWaitMs);
    } finally {
      figures.push({
        test: expect.getState().currentTestName,
        path: a.path,
        victimRotations: victim.rotationsSince(a.mark).length,
        victimMaxLatenessMs: victim.maxLatenessSince(a.mark),
        attackerMints: mintsFor(repoId, a.since),
        restarts: op.restarts - a.restarts,
        peakMemoryMiB: Math.round(op.memory().peak / (1 << 20)),
      });
    }
  }

  const describeReady = (t: TokenObject | undefined) => describeReadyOf(t, 300);

  /** Waits until the token's Ready is about its current generation with a reason in `reasons`. */
  const settle = (namespace: string, name: string, reasons: string[], timeout = 25_000) =>
    settleReady(kube, namespace, name, (r) => reasons.includes(r.reason), {
      timeout,
      interval: 200,
      message: `${namespace}/${name}: Ready never had a reason in ${reasons}`,
      limit: 300,
    });

  /** A Ready=False condition a user can act on: short, plain, no stack, no "[object". */
  function expectReadable(t: TokenObject | undefined, what: string) {
    const r = ready(t);
    expect(r, what).toBeDefined();
    if (!r) return;
    expect(r.status, `${what}: ${r.reason}: ${r.message}`).toBe("False");
    expect(r.reason, what).toMatch(/^[A-Z][A-Za-z]+$/);
    expect(r.message.trim(), what).not.toBe("");
    expect(r.message.length, `${what}: a ${r.message.length}-character message`).toBeLessThanOrEqual(1024);
    expect(r.message, what).not.toMatch(/\[object |\bundefined\b|\bNaN\b|\n\s+at /);
  }

  function expectReadableOrIssued(t: TokenObject | undefined, what: string) {
    if (ready(t)?.reason === "Issued") expect(ready(t)?.status, what).toBe("True");
    else expectReadable(t, what);
  }

  /** A refusal a user can act on: a non-zero exit and the field named. */
  function expectRefused(r: KubectlResult, what: string, field: RegExp) {
    expect(r.code, `${what}: kubectl apply succeeded: ${r.stdout}`).not.toBe(0);
    expect(r.stderr, what).toMatch(field);
    expect(r.stderr, what).not.toMatch(/Internal error|unknown reason|EOF|panic/i);
  }

  /** Polls `probe` for `ms`; returns the first problem it reports, or undefined. */
  async function watchFor(ms: number, probe: () => Promise<string | undefined> | string | undefined) {
    const from = Date.now();
    let problem: string | undefined;
    await expect
      .poll(
        async () => {
          problem = await probe();
          return problem !== undefined || Date.now() - from >= ms;
        },
        { timeout: ms + 15_000, interval: 250 },
      )
      .toBe(true);
    return problem;
  }

  const logsSince = (n: number) => op.lines().slice(n);

  // -------------------------------------------------------------------------------------------
  // The harness

  it("harness: the victim rotates on time, the hostile servers answer, a killed operator is restarted", async () => {
    const a = begin();
    await victim.expectOnTime(a.mark, latenessBoundMs, rotationWaitMs);
    expect(victim.samples).toBeGreaterThan(0);
    expect((await fetch(`${hostile.url}/app`)).status).toBe(200);
    expect((await fetch(`${internal.url}/probe`)).status).toBe(200);
    expect(internal.requests).toEqual(["GET /probe"]);
    internal.requests.length = 0;
    expect(op.memory().limit).toBe(memoryLimitBytes);
    expect(op.memory().usage).toBeGreaterThan(0);

    const first = op.current;
    first.kill("SIGKILL");
    await first.exited;
    await expect.poll(() => op.restarts, { timeout: 5_000 }).toBe(1);
    expect(op.exits[0]?.signal).toBe("SIGKILL");
    await op.current.waitFor("Started ghat", 30_000);
    // The restarted operator keeps the victim rotating.
    const after = victim.mark();
    await expect
      .poll(() => victim.rotationsSince(after).length, { timeout: rotationWaitMs })
      .toBeGreaterThan(0);
  });

  // -------------------------------------------------------------------------------------------
  // The attacks

  it("1. a template bomb (58 nested base64) is refused, with no memory growth", async () => {
    const ns = await tenantNamespace("attacker-1", "attacker");
    const a = begin();
    const before = op.memory().usage;
    const bomb = `{{ apiUrl${" | base64".repeat(58)} }}`;
    const r = await apply(
      ns,
      token("bomb", {
        secrets: [{ name: "bomb-out", format: "template", template: { data: { out: bomb } } }],
      }),
    );
    a.path = r.code === 0 ? "accepted" : "refused at admission";
    if (r.code !== 0) {
      expectRefused(r, "template bomb", /spec\.secrets\[0\]\.template/);
    } else {
      const t = await settle(ns, "bomb", ["InvalidSpec"]);
      expectReadable(t, "template bomb");
      expect(await kube.secret(ns, "bomb-out"), "a Secret was rendered").toBeUndefined();
    }
    // Give a lazy renderer its chance to blow up, watching the memory.
    const grew = await watchFor(5_000, () => {
      const m = op.memory();
      return m.peak - before > 64 << 20 ? `memory grew by ${(m.peak - before) >> 20} MiB` : undefined;
    });
    expect(grew).toBeUndefined();
    await isolated(a, 1);
  });

  it('2. privateKeySecretRef.name "key=1" on a tenant GitHubApp is refused, or reads clearly; workers never stuck', async () => {
    const ns = await tenantNamespace("attacker-2", "attacker");
    await kube.createKeySecret(ns, "own-key", keys.privateKeyPkcs1Pem);
    const a = begin();
    const r = await tenantApp(ns, "keyed", { baseUrl: sim.url, privateKeySecretRef: { name: "key=1" } });
    a.path = r.code === 0 ? "accepted" : "refused at admission";
    if (r.code !== 0) {
      expectRefused(r, "key=1", /spec\.privateKeySecretRef\.name/);
    } else {
      const names = ["k0", "k1", "k2", "k3"];
      for (const name of names) {
        const tr = await apply(ns, token(name, { appRef: { name: "keyed" } }));
        expect(tr.code, tr.stderr).toBe(0);
      }
      for (const name of names)
        expectReadable(
          await settle(ns, name, ["InvalidSpec", "PrivateKeyNotFound", "InvalidPrivateKey"]),
          name,
        );
    }
    // A worker is free: a token applied now is Ready at once.
    const canary = await apply(ns, token("canary", { permissions: { issues: "read" } }));
    expect(canary.code, canary.stderr).toBe(0);
    await settle(ns, "canary", ["Issued"], 15_000);
    await isolated(a, 2);
  });

  it("3. refreshPolicy 59m59.999s / 59m59.998s with sharing None is refused naming refreshPolicy", async () => {
    const ns = await tenantNamespace("attacker-3", "attacker");
    const a = begin();
    const r = await apply(
      ns,
      token("greedy", {
        sharing: "None",
        refreshPolicy: { refreshBefore: "59m59.999s", minRemainingLifetime: "59m59.998s" },
      }),
    );
    a.path = r.code === 0 ? "accepted" : "refused at admission";
    if (r.code !== 0) {
      expectRefused(r, "greedy refresh policy", /spec\.refreshPolicy/);
    } else {
      // Accepted: then it must not turn 30 s tokens into a mint loop.
      const loop = await watchFor(observeMs, () => {
        const n = mintsFor(repo.app2, a.since);
        return n > 3 ? `${n} mints in ${Math.round((sim.now() - a.since) / 1000)} s` : undefined;
      });
      expect(loop, "an accepted greedy refresh policy mints in a loop").toBeUndefined();
    }
    await isolated(a, 3);
  });

  it("4. a hostile GitHub (the tenant's own baseUrl) ends each answer in InvalidResponse, with bounded mints", async () => {
    const ns = await tenantNamespace("attacker-4", "attacker");
    await kube.createKeySecret(ns, "own-key", keys.privateKeyPkcs1Pem);
    const marker = `MARKER-${randomBytes(6).toString("hex")}`;
    const hour = 3_600_000;
    const valid = () => ({ token: hostile.token(), expires_at: isoSeconds(Date.now() + hour) });
    const permissions60k = Object.fromEntries(
      Array.from({ length: 60_000 }, (_, i) => [`perm_${i}`, "read"]),
    );
    /** Installation id → label, answer, the Ready reasons that are right. */
    const cases: [number, string, Parameters<typeof hostile.answers.set>[1], string[]][] = [
      [
        1,
        "(a) expires_at in the past",
        created(() => ({ ...valid(), expires_at: isoSeconds(Date.now() - hour) })),
        ["InvalidResponse"],
      ],
      [
        2,
        "(b) expires_at 2 s ahead",
        created(() => ({ ...valid(), expires_at: isoSeconds(Date.now() + 2_000) })),
        ["InvalidResponse"],
      ],
      [
        3,
        "(c) expires_at in 9999",
        created(() => ({ ...valid(), expires_at: "9999-12-31T23:59:59Z" })),
        ["InvalidResponse"],
      ],
      [
        4,
        "(d) a token with a newline and a machine line",
        created(() => ({ ...valid(), token: `${hostile.token()}\nmachine evil.example login x password y` })),
        ["InvalidResponse"],
      ],
      [5, "(e) an endless body", endlessBody(), ["InvalidResponse"]],
      [
        6,
        "(f) a 302 to an internal host",
        redirect(`${internal.url}/latest/meta-data/`),
        ["InvalidResponse"],
      ],
      [7, "(g) a non-JSON 500 with a marker", htmlError(marker), ["InvalidResponse", "GitHubUnavailable"]],
      [
        8,
        "(h) 60,000 permissions",
        created(() => ({ ...valid(), permissions: permissions60k })),
        ["InvalidResponse"],
      ],
    ];
    for (const [id, , answer] of cases) hostile.answers.set(id, answer);
    internal.requests.length = 0;
    const logMark = op.lines().length;
    const a = begin();
    const appR = await tenantApp(ns, "evil", { baseUrl: hostile.url });
    expect(appR.code, appR.stderr).toBe(0);
    for (const [id] of cases) {
      const tr = await apply(
        ns,
        token(`h${id}`, {
          appRef: { name: "evil" },
          installation: { id },
          secrets: [{ name: `h${id}-token` }, { name: `h${id}-netrc`, format: "netrc" }],
          // The attacker picks the shortest minimum lifetime allowed: the fastest retries.
          refreshPolicy: { refreshBefore: "2s", minRemainingLifetime: "1s" },
        }),
      );
      expect(tr.code, tr.stderr).toBe(0);
    }
    const started = Date.now();
    const outcomes = await Promise.all(
      cases.map(async ([id, label, , reasons]) => {
        try {
          const t = await settle(ns, `h${id}`, reasons, observeMs + 5_000);
          expectReadable(t, label);
          return undefined;
        } catch (err) {
          return `${label}: ${(err as Error).message.split("\n")[0]}`;
        }
      }),
    );
    // Watched ~20 s in all: mint requests stay bounded.
    await watchFor(Math.max(0, observeMs - (Date.now() - started)), () => undefined);
    for (const [id, label] of cases)
      expect
        .soft(hostile.mintsOf(id), `${label}: mint requests in ${observeMs / 1000} s`)
        .toBeLessThanOrEqual(10);
    expect.soft(outcomes.filter((o) => o !== undefined)).toEqual([]);
    expect.soft(internal.requests, "(f) the internal host was reached").toEqual([]);
    const streamed = hostile.streamed.get(5) ?? [];
    expect
      .soft(Math.max(0, ...streamed), `(e) bytes read of one endless answer (${streamed.length} answers)`)
      .toBeLessThanOrEqual(4 << 20);
    const events = (await kubectl(["-n", ns, "get", "events", "-o", "json"])).stdout;
    const objects = (await kubectl(["-n", ns, "get", "githubapptokens,githubapps", "-o", "json"])).stdout;
    expect.soft(`${events}${objects}`.includes(marker), "(g) the 500 body's marker is shown").toBe(false);
    const secrets = await kube.core.listNamespacedSecret({ namespace: ns });
    const injected = secrets.items.filter((s) =>
      Object.values(s.data ?? {}).some((v) =>
        Buffer.from(v, "base64").toString("utf8").includes("machine evil"),
      ),
    );
    expect
      .soft(
        injected.map((s) => s.metadata?.name),
        "(d) a Secret holds the injected machine line",
      )
      .toEqual([]);
    expect
      .soft(logsSince(logMark).filter((l) => /TimeoutOverflowWarning|does not fit into a 32-bit/.test(l)))
      .toEqual([]);
    await isolated(a, 0);
  });

  it("5. 150 labelled Secrets of 0.9 MiB each in the attacker's namespace: no OOM, the victim on time", async () => {
    const ns = await tenantNamespace("attacker-5", "attacker");
    const a = begin();
    const filler = randomBytes(Math.floor(0.9 * (1 << 20))).toString("base64");
    const names = Array.from({ length: 150 }, (_, i) => `flood-${i}`);
    // 25 at a time: each request carries ~1.2 MB.
    for (let i = 0; i < names.length; i += 25) {
      await Promise.all(
        names.slice(i, i + 25).map((name) =>
          kube.core.createNamespacedSecret({
            namespace: ns,
            body: {
              metadata: {
                name,
                labels: { "app.kubernetes.io/managed-by": "ghat", "ghat.dev/token": "victim" },
              },
              data: { token: filler },
            },
          }),
        ),
      );
    }
    // The operator's watch has them now (or never will): watch it a while longer.
    const died = await watchFor(8_000, () => (op.restarts > a.restarts ? op.describeExits() : undefined));
    const peak = op.memory().peak;
    await isolated(a, 0);
    expect(died, "the operator died").toBeUndefined();
    expect(peak, `peak memory ${peak >> 20} MiB`).toBeLessThan(memoryLimitBytes);
    await kube.core.deleteCollectionNamespacedSecret({
      namespace: ns,
      labelSelector: "app.kubernetes.io/managed-by=ghat",
    });
  });

  it("6. a transferred repository does not lead the token out of the policy's owners", async () => {
    const ns = await tenantNamespace("attacker-6", "attacker");
    const a = begin();
    const r = await apply(
      ns,
      token("escape", { installation: { repository: "acme/legacy-tool" }, repositories: ["app-1"] }),
    );
    expect(r.code, r.stderr).toBe(0);
    let escaped: string | undefined;
    const noEscape = async () => {
      const t = await kube.getToken(ns, "escape");
      const conds = t?.status?.conditions ?? [];
      if (ready(t)?.status === "True") escaped = `Ready=True: ${describeReady(t)}`;
      if (
        conds.some((c) => c.type === "ScopeMatched" && c.status === "True") &&
        (t?.status as { owner?: string } | undefined)?.owner === "acme"
      )
        escaped = `ScopeMatched=True with owner acme: ${JSON.stringify(t?.status)}`;
      const live = sim.liveTokens().filter((s) => s.installationId === otherOrg);
      if (live.length > 0) escaped = `${live.length} live token(s) of other-org: ${JSON.stringify(live)}`;
      return escaped;
    };
    const t = await settle(ns, "escape", ["NotPermitted", "InstallationNotFound"]).catch(
      async (err: unknown) => {
        await noEscape();
        throw new Error(`${(err as Error).message}${escaped ? `\nescaped: ${escaped}` : ""}`);
      },
    );
    expectReadable(t, "escape");
    expect(await watchFor(5_000, noEscape)).toBeUndefined();
    expect(sim.liveTokens().filter((s) => s.installationId === otherOrg)).toEqual([]);
    await isolated(a, 0, repo.otherApp1);
  });

  it("7. Secret types, Argo CD cluster labels and gitconfig URL injections are refused at admission", async () => {
    const ns = await tenantNamespace("attacker-7", "attacker");
    const a = begin();
    const cases: [string, Record<string, unknown>, RegExp][] = [
      [
        "type service-account-token",
        { name: "sa", type: "kubernetes.io/service-account-token" },
        /spec\.secrets\[0\]\.type|spec\.secrets\[0\].*\btype\b/,
      ],
      [
        "label argocd.argoproj.io/secret-type: cluster",
        { name: "argo", labels: { "argocd.argoproj.io/secret-type": "cluster" } },
        /spec\.secrets\[0\](\.labels|.*\blabels?\b.*argocd\.argoproj\.io\/secret-type)/,
      ],
      [
        "gitconfig URL injection",
        { name: "gc", format: "gitconfig", url: 'https://github.com/acme/"][core]sshCommand=x;[x"' },
        /spec\.secrets\[0\]\.url|spec\.secrets\[0\].*\burl\b/,
      ],
    ];
    const accepted: string[] = [];
    for (const [label, target, field] of cases) {
      const name = String(target.name);
      const r = await apply(ns, token(name, { secrets: [target] }));
      if (r.code === 0) accepted.push(name);
      expect.soft(r.code, `${label}: kubectl apply accepted it`).not.toBe(0);
      if (r.code !== 0) expectRefused(r, label, field);
    }
    // Whatever got in must not keep running.
    for (const name of accepted) await kubectl(["-n", ns, "delete", "ghat", name, "--wait=false"]);
    await isolated(a, accepted.length);
  });

  it("8. deleting a GitHubAppToken with an invalid spec removes its finalizer", async () => {
    const ns = await tenantNamespace("attacker-8", "attacker");
    const a = begin();
    const logMark = op.lines().length;
    // Invalid at render time: admitted (unless admission parses templates), Ready=False InvalidSpec.
    const names: string[] = [];
    const tpl = await apply(
      ns,
      token("inv-tpl", {
        secrets: [{ name: "inv-tpl-out", format: "template", template: { data: { out: "{{ tokn }}" } } }],
      }),
    );
    if (tpl.code === 0) names.push("inv-tpl");
    else expectRefused(tpl, "unknown template variable", /spec\.secrets\[0\]\.template/);
    // Names an App that does not exist: Ready=False AppNotFound.
    const noApp = await apply(ns, token("inv-app", { appRef: { name: "no-such-app" } }));
    expect(noApp.code, noApp.stderr).toBe(0);
    names.push("inv-app");
    // Valid first (a finalizer, a token), then edited into a spec the API server admits and
    // ghat's schema refuses, when there is one.
    const edited = await apply(ns, token("inv-edit"));
    expect(edited.code, edited.stderr).toBe(0);
    names.push("inv-edit");
    await settle(ns, "inv-edit", ["Issued"]);
    const invalidEdits = [
      { secrets: [{ name: "inv-edit-token", key: "." }] },
      { secrets: [{ name: "inv-edit-token", key: "..data" }] },
    ];
    let admitted: Record<string, unknown> | undefined;
    for (const edit of invalidEdits) {
      if ((await apply(ns, token("inv-edit", edit))).code === 0) {
        admitted = edit;
        break;
      }
    }
    a.path = admitted ? `admitted the edit ${JSON.stringify(admitted)}` : "refused every invalid edit";
    for (const name of names) {
      const want =
        name === "inv-app" ? ["AppNotFound"] : admitted || name === "inv-tpl" ? ["InvalidSpec"] : ["Issued"];
      const t = await settle(ns, name, want);
      expectReadableOrIssued(t, name);
    }
    // inv-edit held a token: its finalizer is in place, so the delete below depends on ghat.
    const held = (await kube.getToken(ns, "inv-edit")) as TokenObject & {
      metadata: { finalizers?: string[] };
    };
    expect(held.metadata.finalizers).toContain("ghat.dev/revoke-token");
    for (const name of names) {
      const d = await kubectl(["-n", ns, "delete", "ghat", name, "--wait=false"]);
      expect(d.code, d.stderr).toBe(0);
    }
    await expect
      .poll(
        async () =>
          (await Promise.all(names.map((n) => kube.getToken(ns, n))))
            .filter(Boolean)
            .map((t) => t?.metadata.name),
        {
          timeout: 20_000,
          interval: 200,
        },
      )
      .toEqual([]);
    expect(logsSince(logMark).filter((l) => l.includes("Failed to remove finalizer"))).toEqual([]);
    await isolated(a, 2);
  });

  it("9. deleting a namespace revokes every token of it, its GitHubApp on GHES behind a proxy included", async () => {
    const ns = await tenantNamespace("attacker-9", "attacker");
    await kube.createKeySecret(ns, "own-key", keys.privateKeyPkcs1Pem);
    const a = begin();
    const appR = await tenantApp(ns, "ghes", { baseUrl: `${sim.url}/api/v3`, proxy: proxy.url });
    expect(appR.code, appR.stderr).toBe(0);
    const names = ["r0", "r1", "r2", "r3", "r4"];
    for (const name of names) {
      const r = await apply(
        ns,
        token(name, { appRef: { name: "ghes" }, repositories: ["app-3"], sharing: "None" }),
      );
      expect(r.code, r.stderr).toBe(0);
    }
    await Promise.all(names.map((name) => settle(ns, name, ["Issued"], 40_000)));
    const held = await Promise.all(names.map((name) => kube.secretValue(ns, `${name}-token`)));
    expect(held.every((t) => t !== undefined && sim.checkToken(t).live)).toBe(true);
    expect(proxy.connects.length + proxy.forwarded.length, "requests through the proxy").toBeGreaterThan(0);
    const d = await kubectl(["delete", "namespace", ns, "--timeout=50s"]);
    expect(d.code, d.stderr).toBe(0);
    await expect
      .poll(async () => (await kube.core.readNamespace({ name: ns }).catch(() => undefined)) === undefined, {
        timeout: 10_000,
      })
      .toBe(true);
    const live = held.filter((t) => t !== undefined && sim.checkToken(t).live);
    expect(live.length, "tokens of the deleted namespace still live at GitHub").toBe(0);
    expect(sim.liveTokens().filter((s) => s.repositoryIds?.includes(repo.app3))).toEqual([]);
    // Five mints, and the refreshes of 30 s tokens while the test ran.
    await isolated(a, 20, repo.app3);
  });

  // -------------------------------------------------------------------------------------------
  // After all that

  it("leaks no token or key into operator logs, events, status or spec", async () => {
    const lines = op.lines();
    expect(lines.length).toBeGreaterThan(0);
    expect(await leaks({ sim, keys }, lines)).toEqual([]);
    const events = (await kubectl(["get", "events", "-A", "-o", "json"])).stdout;
    const objects = (
      await kubectl(["get", "githubapptokens,githubapps,clustergithubapps", "-A", "-o", "json"])
    ).stdout;
    const haystack = [...lines, events, objects].join("\n");
    const shown = hostile.handedOut.filter((t) => haystack.includes(t));
    expect(shown.length, "tokens handed out by the hostile GitHub, shown").toBe(0);
  });
});

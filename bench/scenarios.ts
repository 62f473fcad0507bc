/**
 * The four benchmark scenarios of issue #7 (burst, steady state, restart, sharing) plus the
 * idle single-token latency. Each returns figures; nothing here asserts.
 */
import { group, version } from "../src/api/meta.ts";
import {
  apiserverRequests,
  createTokens,
  diff,
  type github,
  type Kube,
  kubectl,
  metricSeries,
  metricSum,
  mints,
  namespaceWithApp,
  Observer,
  Operator,
  percentile,
  requestsOf,
  tokenSpec,
  total,
  until,
  writesOf,
} from "./lib.ts";

type GitHub = Awaited<ReturnType<typeof github>>;

export interface BurstResult {
  tokens: number;
  allReadyS: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  mints: number;
  operatorWrites: Record<string, number>;
  /** Every request ghat made in the burst, by verb and resource (reads included). */
  operatorRequests: Record<string, number>;
  apiserverRequests: Record<string, number>;
  operatorCpuS: number;
  /** The operator's CPU over the burst by thread (main thread, V8's workers, libuv's pool). */
  operatorCpuByThread: Record<string, number>;
  /** Set by bench/run.ts: the API server's CPU over the burst. */
  apiserverCpuS?: number;
  operatorPeakRssMiB: number;
  operatorRssMiB: number;
  operatorHeapMiB: number;
}

/** N tokens created at once (sharing off, so each is its own mint): time until all are Ready. */
export async function burst(
  k: Kube,
  op: Operator,
  gh: GitHub,
  n: number,
  prefix: string,
  options: { perNamespace?: number; concurrency?: number; timeoutMs?: number } = {},
): Promise<BurstResult> {
  const per = options.perNamespace ?? 500;
  const namespaces = Array.from({ length: Math.ceil(n / per) }, (_, i) => `${prefix}-${i}`);
  for (const ns of namespaces) await namespaceWithApp(k, gh, ns);
  const obs = new Observer(k, `${prefix}-`);
  await obs.start();
  try {
    const tokens = Array.from({ length: n }, (_, i) =>
      tokenSpec(namespaces[Math.floor(i / per)] ?? "", `t${i}`, { sharing: "None" }),
    );
    const mintsBefore = mints(gh.sim);
    const metricsBefore = await op.metrics();
    const writesBefore = writesOf(metricsBefore);
    const requestsBefore = requestsOf(metricsBefore);
    const apiBefore = await apiserverRequests(k);
    const cpuBefore = op.cpuSeconds();
    const threadsBefore = op.threadCpu();
    const t0 = Date.now();
    const sent = await createTokens(k, tokens, options.concurrency ?? 32);
    await until(() => obs.readyAt.size >= n, options.timeoutMs ?? 30 * 60_000, 100);
    const latencies = [...sent].map(([key, at]) => (obs.readyAt.get(key) ?? Number.NaN) - at);
    const last = Math.max(...obs.readyAt.values());
    const mem = op.memory();
    const metrics = await op.metrics();
    return {
      operatorHeapMiB: metricSum(metrics, "nodejs_heap_size_used_bytes") / 2 ** 20,
      tokens: n,
      allReadyS: (last - t0) / 1000,
      p50Ms: percentile(latencies, 50),
      p95Ms: percentile(latencies, 95),
      p99Ms: percentile(latencies, 99),
      mints: mints(gh.sim) - mintsBefore,
      operatorWrites: diff(writesOf(metrics), writesBefore),
      operatorRequests: diff(requestsOf(metrics), requestsBefore),
      apiserverRequests: diff(await apiserverRequests(k), apiBefore),
      operatorCpuS: op.cpuSeconds() - cpuBefore,
      operatorCpuByThread: diff(op.threadCpu(), threadsBefore),
      operatorPeakRssMiB: mem.peakKiB / 1024,
      operatorRssMiB: mem.rssKiB / 1024,
    };
  } finally {
    await obs.stop();
  }
}

/** One token at a time on an idle operator: apply→Ready. */
export async function idle(
  k: Kube,
  gh: GitHub,
  count: number,
  ns: string,
): Promise<{ p50Ms: number; maxMs: number }> {
  await namespaceWithApp(k, gh, ns);
  const obs = new Observer(k, ns);
  await obs.start();
  try {
    const latencies: number[] = [];
    for (let i = 0; i < count; i++) {
      const sent = await createTokens(k, [tokenSpec(ns, `idle${i}`, { sharing: "None" })], 1);
      const key = `${ns}/idle${i}`;
      await until(() => obs.readyAt.has(key), 60_000, 5);
      latencies.push((obs.readyAt.get(key) ?? 0) - (sent.get(key) ?? 0));
    }
    return { p50Ms: percentile(latencies, 50), maxMs: Math.max(...latencies) };
  } finally {
    await obs.stop();
  }
}

export interface IdleResult {
  tokens: number;
  windowS: number;
  cpuS: number;
  cpuByThread: Record<string, number>;
  /** ghat's requests in the window, by verb and resource. */
  requests: Record<string, number>;
  rssMiB: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  /** Resident KiB by mapping at the end (Operator.rssByMapping). */
  mappings: Record<string, number>;
}

/**
 * The operator left alone with `tokens` current tokens: CPU over `windowS` (after `settleS`
 * for the GC and memory reducer to finish with the burst before), then memory.
 */
export async function idleWindow(
  op: Operator,
  tokens: number,
  windowS: number,
  settleS = 30,
): Promise<IdleResult> {
  await sleep(settleS * 1000);
  const cpu0 = op.cpuSeconds();
  const threads0 = op.threadCpu();
  const requests0 = requestsOf(await op.metrics());
  await sleep(windowS * 1000);
  const cpuS = op.cpuSeconds() - cpu0;
  const metrics = await op.metrics();
  const g = (name: string) => metricSum(metrics, name) / 2 ** 20;
  return {
    tokens,
    windowS,
    cpuS,
    cpuByThread: diff(op.threadCpu(), threads0),
    requests: diff(requestsOf(metrics), requests0),
    rssMiB: op.memory().rssKiB / 1024,
    heapUsedMiB: g("nodejs_heap_size_used_bytes"),
    heapTotalMiB: g("nodejs_heap_size_total_bytes"),
    externalMiB: g("nodejs_external_memory_bytes"),
    mappings: op.rssByMapping(),
  };
}

/** A wait of known length (the idle window itself; never a wait for a condition). */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface RestartResult {
  tokens: number;
  githubCalls: number;
  operatorWrites: Record<string, number>;
  scheduledS: number;
  operatorPeakRssMiB: number;
}

/** Stops the operator and starts a new one over `expected` valid tokens. */
export async function restart(
  k: Kube,
  op: Operator,
  sims: GitHub[],
  expected: number,
  flags: string[],
  entry?: string,
): Promise<{ result: RestartResult; op: Operator }> {
  // Every benchmark App's status says Verified first: the new operator trusts that until its
  // check interval, so the restart itself asks GitHub nothing.
  await until(
    async () => {
      const list = (await k.custom.listClusterCustomObject({ group, version, plural: "githubapps" })) as {
        items: {
          metadata?: { namespace?: string };
          status?: { conditions?: { type: string; reason: string }[] };
        }[];
      };
      return list.items
        .filter((a) => a.metadata?.namespace?.startsWith("bench-"))
        .every((a) => a.status?.conditions?.some((c) => c.type === "Ready" && c.reason === "Verified"));
    },
    60_000,
    200,
  );
  await op.stop();
  const calls = () => sims.reduce((sum, gh) => sum + gh.sim.counts().total, 0);
  const before = calls();
  const next = new Operator(k.kubeconfig, flags, entry);
  await until(
    async () => metricSeries(await next.metrics(), "ghat_token_expiry_timestamp_seconds") >= expected,
    10 * 60_000,
    200,
  );
  const scheduledS = (Date.now() - next.startedAt) / 1000;
  return {
    op: next,
    result: {
      tokens: expected,
      githubCalls: calls() - before,
      operatorWrites: writesOf(await next.metrics()),
      scheduledS,
      operatorPeakRssMiB: next.memory().peakKiB / 1024,
    },
  };
}

export interface SteadyResult {
  tokens: number;
  lifetimeS: number;
  windowS: number;
  rotations: number;
  mints: number;
  mintsPerRotation: number;
  rotationIntervalS: number;
  secretWritesPerRotation: number;
  statusWritesPerRotation: number;
  writesBetweenRotations: number;
  extraOperatorWrites: number;
  minRemainingS: number;
  minRemainingPolicyS: number;
  /** Every mint of this scenario's simulator, and every distinct token its Secrets held: equal when no mint is wasted. */
  everMinted: number;
  everHeld: number;
}

/** M tokens (sharing off) over several rotations with short-lived tokens from `gh`. */
export async function steady(
  k: Kube,
  op: Operator,
  gh: GitHub,
  options: { tokens: number; lifetimeS: number; rotationsPerToken: number; ns: string },
): Promise<SteadyResult> {
  const { ns, tokens: m, lifetimeS } = options;
  const refreshBefore = Math.round(lifetimeS * 0.4);
  const minRemaining = Math.round(lifetimeS * 0.2);
  await namespaceWithApp(k, gh, ns);
  const obs = new Observer(k, ns);
  await obs.start();
  try {
    const specs = Array.from({ length: m }, (_, i) =>
      tokenSpec(ns, `s${i}`, {
        sharing: "None",
        refreshPolicy: { refreshBefore: `${refreshBefore}s`, minRemainingLifetime: `${minRemaining}s` },
      }),
    );
    await createTokens(k, specs, 16);
    await until(() => obs.readyAt.size >= m, 5 * 60_000);
    obs.resetWrites();
    const mintsBefore = mints(gh.sim);
    const writesBefore = writesOf(await op.metrics());
    const t0 = Date.now();
    await until(() => obs.secretRotations >= m * options.rotationsPerToken, 30 * 60_000, 100);
    const windowS = (Date.now() - t0) / 1000;
    // A mint in flight has not reached its Secret yet: let the counts settle (bounded).
    await settle(() => mints(gh.sim) === obs.tokenHashes.size);
    // Nor has a write in flight reached the watch: settle until the operator's count of
    // write requests matches what the watch saw, or 10 s (what remains is a real extra).
    let writes = diff(writesOf(await op.metrics()), writesBefore);
    for (let i = 0; i < 20 && total(writes) !== obs.secretRotations + obs.statusRotations; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      writes = diff(writesOf(await op.metrics()), writesBefore);
    }
    const minted = mints(gh.sim) - mintsBefore;
    const rotations = obs.secretRotations;
    const everMinted = mints(gh.sim);
    const secretPatches = writes["patch secrets"] ?? 0;
    const statusPatches = writes["patch githubapptokens/status"] ?? 0;
    return {
      tokens: m,
      lifetimeS,
      windowS,
      rotations,
      mints: minted,
      mintsPerRotation: minted / rotations,
      rotationIntervalS: (windowS * m) / rotations,
      secretWritesPerRotation: secretPatches / rotations,
      statusWritesPerRotation: statusPatches / rotations,
      writesBetweenRotations: obs.secretOtherWrites + obs.statusOtherWrites,
      // Write requests beyond one Secret and one status write per rotation (no-op writes show here).
      extraOperatorWrites: total(writes) - rotations - obs.statusRotations,
      minRemainingS: obs.minRemainingMs / 1000,
      minRemainingPolicyS: minRemaining,
      everMinted,
      everHeld: obs.tokenHashes.size,
    };
  } finally {
    await obs.stop();
  }
}

export interface SharingResult {
  tokens: number;
  windowS: number;
  distinctTokens: number;
  mints: number;
  mintsPerScopeRotation: number;
  withoutSharing: number;
}

/** M tokens of one scope (sharing on, the default) over several rotations. */
export async function sharing(
  k: Kube,
  gh: GitHub,
  options: { tokens: number; lifetimeS: number; rotations: number; ns: string },
): Promise<SharingResult> {
  const { ns, tokens: m, lifetimeS } = options;
  await namespaceWithApp(k, gh, ns);
  const obs = new Observer(k, ns);
  await obs.start();
  try {
    const scoped = () =>
      [...gh.sim.state.tokens.values()].filter(
        (t) => t.permissions.issues === "read" && !t.permissions.contents,
      );
    const specs = Array.from({ length: m }, (_, i) =>
      tokenSpec(ns, `sh${i}`, {
        permissions: { issues: "read" },
        refreshPolicy: {
          refreshBefore: `${Math.round(lifetimeS * 0.4)}s`,
          minRemainingLifetime: `${Math.round(lifetimeS * 0.2)}s`,
        },
      }),
    );
    const t0 = Date.now();
    await createTokens(k, specs, 16);
    await until(() => obs.readyAt.size >= m, 5 * 60_000);
    await until(() => obs.tokenHashes.size >= options.rotations + 1, 30 * 60_000, 100);
    const windowS = (Date.now() - t0) / 1000;
    await settle(() => scoped().length === obs.tokenHashes.size);
    const minted = scoped().length;
    return {
      tokens: m,
      windowS,
      distinctTokens: obs.tokenHashes.size,
      mints: minted,
      mintsPerScopeRotation: minted / obs.tokenHashes.size,
      withoutSharing: m * obs.tokenHashes.size,
    };
  } finally {
    await obs.stop();
  }
}

/** Waits up to 10 s for `check` (counts settling after in-flight work); never throws. */
async function settle(check: () => boolean): Promise<void> {
  await until(check, 10_000, 50).catch(() => undefined);
}

/** Deletes namespaces and waits until they are gone (the operator revokes and releases). */
export async function deleteNamespaces(k: Kube, names: string[]): Promise<void> {
  for (const name of names) await k.core.deleteNamespace({ name });
  await until(
    async () => {
      const out = await kubectl(k, ["get", "namespaces", "-o", "name"]);
      return names.every((n) => !out.includes(`namespace/${n}\n`));
    },
    10 * 60_000,
    500,
  );
}

/** Applies the generated CRDs. */
export async function installCrds(k: Kube): Promise<void> {
  await kubectl(k, ["apply", "--server-side", "-f", new URL("../crds/", import.meta.url).pathname]);
  await kubectl(k, [
    "wait",
    "--for=condition=Established",
    "--timeout=60s",
    `crd/githubapptokens.${group}`,
    `crd/githubapps.${group}`,
    `crd/clustergithubapps.${group}`,
  ]);
}

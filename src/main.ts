import { readFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { getHeapStatistics } from "node:v8";
import { KubeConfig } from "@kubernetes/client-node";
import { type Clock, systemClock } from "./clock.ts";
import { type Config, ConfigError, kubeAccessProblem, parseConfig, startupSummary, usage } from "./config.ts";
import { AppResolver } from "./controller/apps.ts";
import { AppStatusChecker } from "./controller/appstatus.ts";
import { Controller } from "./controller/controller.ts";
import { Reconciler } from "./controller/reconcile.ts";
import { Rollouts } from "./controller/rollout.ts";
import { MintLimiter } from "./core/limits.ts";
import { createGateway } from "./github/gateway.ts";
import { keyFingerprint, parsePrivateKey } from "./github/privatekey.ts";
import { startHealthServer } from "./health.ts";
import { type Gc, IdleGc } from "./idlegc.ts";
import { ClusterCache, tokenSource } from "./kube/cache.ts";
import { instrument } from "./kube/instrument.ts";
import { KubeClient } from "./kube/kube.ts";
import { LeaderElector, leaseApi } from "./kube/lease.ts";
import { KubeWorkloads } from "./kube/workloads.ts";
import { createLogger, type Logger } from "./log.ts";
import { Metrics, startMetricsServer } from "./metrics.ts";
import { SignerRegistry } from "./signer/registry.ts";
import { revision, version, versionLine } from "./version.ts";

export interface Operator {
  healthPort: number;
  metricsPort: number;
  controller: Controller;
  /** GitHubApp and ClusterGitHubApp status. */
  appStatus: AppStatusChecker;
  cache: ClusterCache;
  metrics: Metrics;
  /** True while this replica reconciles (always, without leader election). */
  leading(): boolean;
  /** Finish in-flight work, release the lease, stop watches and servers. */
  stop(): Promise<void>;
}

export interface OperatorDeps {
  clock?: Clock;
  log?: Logger;
  /** Called when the lease is lost (the operator has stepped down and campaigns again). */
  onLostLeadership?: () => void;
  identity?: string;
}

/** The composition root: builds the real clients and starts the operator. */
export async function startOperator(config: Config, deps: OperatorDeps = {}): Promise<Operator> {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? createLogger({ level: config.logLevel, pretty: config.logFormat === "pretty" });
  const kubeConfig = new KubeConfig();
  if (config.kubeconfig) kubeConfig.loadFromFile(config.kubeconfig);
  else kubeConfig.loadFromCluster();
  const metrics = new Metrics();
  instrument(kubeConfig, (verb, resource) => metrics.kubeRequests.inc({ verb, resource }));

  const kube = new KubeClient(kubeConfig, clock, config.instance);
  // Keyless signers read their one Secret (Vault token, HSM PIN) through the same watched cache
  // as private keys; cache is assigned below, before any App is resolved.
  const signers: SignerRegistry = new SignerRegistry({
    clock,
    timeoutMs: config.githubTimeoutMs,
    pkcs11Modules: config.pkcs11Module,
    serviceAccountToken: async () => {
      try {
        return (await readFile(config.serviceAccountTokenFile, "utf8")).trim() || undefined;
      } catch {
        return undefined;
      }
    },
    readSecret: async (namespace, name, key) => {
      const data = await cache.keySecret(namespace, name);
      const value = data?.[key];
      return value === undefined ? undefined : Buffer.from(value, "base64").toString("utf8");
    },
    observe: (backend, result, seconds) => {
      metrics.signerRequests.inc({ backend, result });
      metrics.signerDuration.observe({ backend }, seconds);
    },
  });
  let controller: Controller | undefined;
  let appStatus: AppStatusChecker | undefined;
  const cache = new ClusterCache({
    kubeConfig,
    clock,
    log,
    namespaces: config.namespaces,
    operatorNamespace: config.operatorNamespace,
    onChange: (kind, obj, event) => {
      controller?.onChange(kind, obj, event);
      if (kind === "GitHubApp" || kind === "ClusterGitHubApp") {
        appStatus?.onApp(kind, obj, event);
        if (event === "delete") {
          const ns = kind === "GitHubApp" ? (obj.metadata?.namespace ?? "") : "";
          signers.forget(`${kind}/${ns}/${obj.metadata?.name ?? ""}`);
        }
      } else if (kind === "KeySecret")
        appStatus?.onSecret(obj.metadata?.namespace ?? "", obj.metadata?.name ?? "");
    },
    onResync: (kind) => controller?.onResync(kind),
  });
  // The image runs Node with --expose-gc for this (src/idlegc.ts); without it nothing is done.
  const exposed = (globalThis as { gc?: unknown }).gc;
  const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
  const idleGc = new IdleGc({
    clock,
    gc: typeof exposed === "function" ? (exposed as Gc) : undefined,
    heap: () => {
      const h = getHeapStatistics();
      return { total: h.total_heap_size, used: h.used_heap_size };
    },
    onCompacted: (before, after) =>
      log.info(
        {
          heapTotalMiB: [mib(before.total), mib(after.total)],
          heapUsedMiB: [mib(before.used), mib(after.used)],
        },
        "Gave the heap back after a burst",
      ),
  });
  controller = new Controller({
    clock,
    log,
    cache,
    workers: config.workers,
    operatorNamespace: config.operatorNamespace,
    kube,
    reconcileTimeoutMs: config.reconcileTimeoutMs,
    onOverrun: () => metrics.reconcileOverruns.inc(),
    onDepth: (depth) => metrics.queueDepth.set(depth),
    onReconciled: (ms) => {
      metrics.reconcileDuration.observe(ms / 1000);
      idleGc.busy();
    },
  });
  const queue = controller.queue;
  // What ghat wrote is what the next reconcile reads: no GET for its data, no reconcile for its echo.
  kube.onSecretWrite = (namespace, name) => {
    controller?.secretWriting(namespace, name);
    return (secret) => {
      if (secret) cache.rememberSecret(secret);
      controller?.secretWritten(namespace, name, secret?.metadata?.resourceVersion);
    };
  };
  kube.onTokenWritten = (token) => {
    const m = token.metadata;
    controller?.tokenWritten(m?.namespace ?? "", m?.name ?? "", m?.resourceVersion);
  };
  const gateway = createGateway({
    clock,
    log,
    timeoutMs: config.githubTimeoutMs,
    jwtReuseMs: config.appJwtReuseMs,
    secondaryWaitMs: config.secondaryRateLimitWaitMs,
    minTokenLifetimeMs: config.minTokenLifetimeMs,
    onRequest: ({ route, status, durationMs }) => {
      metrics.githubRequests.inc({ route, status: String(status) });
      metrics.githubDuration.observe({ route }, durationMs / 1000);
    },
    onRateLimit: (installationId, rl) => {
      metrics.rateLimitRemaining.set({ installation: String(installationId) }, rl.remaining);
      metrics.rateLimitLimit.set({ installation: String(installationId) }, rl.limit);
    },
  });
  let elector: LeaderElector | undefined;
  const rollouts = config.workloads
    ? new Rollouts({
        api: new KubeWorkloads(kubeConfig),
        clock,
        log,
        minGapMs: config.restartGapMs,
        canAct: () => (elector ? elector.leading : true),
        changed: (keys) => {
          for (const key of keys) queue.add(key);
        },
      })
    : undefined;
  const apps = new AppResolver({
    operatorNamespace: config.operatorNamespace,
    parseKey: parsePrivateKey,
    fingerprint: keyFingerprint,
    installationOwner: (app, id) => gateway.installationOwner(app, id),
    source: {
      app: (kind, ns, name) => cache.app(kind, ns, name),
      keySecret: (ns, name) => cache.keySecret(ns, name),
      namespaceLabels: (ns) => cache.namespaceLabels(ns),
    },
    signers,
    namespacedAmbientSigners: config.namespacedAmbientSigners,
  });
  appStatus = new AppStatusChecker({
    clock,
    log,
    app: (kind, ns, name) => cache.app(kind, ns, name),
    resolve: (kind, ns, name) => apps.resolveApp(kind, ns, name),
    getApp: (app) => gateway.getApp(app),
    write: (kind, ns, name, status) => kube.applyAppStatus(kind, ns, name, { ...status }),
    canAct: () => (elector ? elector.leading : true),
    intervalMs: config.appCheckIntervalMs,
    observe: (kind, result) => metrics.appChecks.inc({ kind, result }),
  });
  const reconciler = new Reconciler({
    clock,
    log,
    kube,
    source: tokenSource(cache),
    apps,
    github: gateway,
    random: Math.random,
    options: {
      revokeSupersededAfterMs: config.revokeSupersededAfterMs,
      maxRevokeAttemptsOnDelete: 5,
      terminalRetryMs: config.terminalRetryMs,
    },
    ...(rollouts ? { delivery: rollouts } : {}),
    canAct: () => (elector ? elector.leading : true),
    limiter: new MintLimiter({
      tokenIntervalMs: config.minMintIntervalMs,
      app: { perMinute: config.appMintRate, burst: config.appMintBurst },
      installation: { perMinute: config.installationMintRate, burst: config.installationMintBurst },
    }),
    hooks: {
      throttled: (limit) => metrics.mintsThrottled.inc({ limit }),
      internalError: () => metrics.internalErrors.inc(),
      minted: (_key, result) => metrics.refreshes.inc({ result }),
      expiry: (key, expiresAt) => {
        const [namespace = "", name = ""] = key.split("/");
        if (expiresAt === undefined) metrics.tokenExpiry.remove({ namespace, name });
        else metrics.tokenExpiry.set({ namespace, name }, expiresAt / 1000);
      },
      revoked: (result) => metrics.revocations.inc({ result }),
    },
  });
  controller.bind(reconciler);

  let stopping = false;
  let ledBefore = false;
  // Nothing is reconciled before every cache has its first list: a token seen before its
  // App or key would be reported AppNotFound (a status write and an event) for nothing.
  queue.pause();
  if (config.leaderElect) {
    elector = new LeaderElector({
      api: leaseApi(kube.rest),
      namespace: config.leaderElectionNamespace ?? config.operatorNamespace,
      name: config.leaderElectionId,
      identity: deps.identity ?? `${hostname()}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`,
      clock,
      log,
      leaseDurationMs: config.leaseDurationMs,
      renewDeadlineMs: config.renewDeadlineMs,
      retryPeriodMs: config.retryPeriodMs,
      onStartedLeading: () => {
        metrics.leader.set(1);
        if (ledBefore) {
          // Another replica may have rotated, revoked or deleted tokens meanwhile: forget what
          // this one remembers and look at everything again.
          reconciler.reset();
          controller.onResync("GitHubAppToken");
        }
        ledBefore = true;
        queue.resume();
        appStatus?.resume();
      },
      onStoppedLeading: () => {
        metrics.leader.set(0);
        // Step down, not out: an API server restart makes every replica lose its lease, and
        // exiting would only add restarts. Work in flight finishes; nothing new starts, and
        // no revocation timer of this replica calls GitHub any more.
        queue.pause();
        reconciler.stop();
        // Releasing the lease on a graceful stop is not losing it.
        if (!stopping) {
          log.warn("Stepped down; campaigning for the lease again");
          deps.onLostLeadership?.();
        }
      },
    });
  } else {
    metrics.leader.set(1);
  }

  const health = await startHealthServer(config.healthPort, config.bindAddress, {
    live: () => true,
    ready: () => cache.synced,
  });
  const metricsServer = await startMetricsServer(metrics, config.metricsPort, config.bindAddress);
  await cache.start();
  if (elector) elector.start();
  else queue.resume();
  log.info(
    {
      version,
      revision: revision(),
      ...startupSummary(config),
      healthPort: (health.address() as AddressInfo).port,
      metricsPort: (metricsServer.address() as AddressInfo).port,
    },
    "Started ghat",
  );
  idleGc.start();

  return {
    healthPort: (health.address() as AddressInfo).port,
    metricsPort: (metricsServer.address() as AddressInfo).port,
    controller,
    appStatus,
    cache,
    metrics,
    leading: () => (elector ? elector.leading : true),
    async stop() {
      stopping = true;
      log.info("Stopping ghat");
      idleGc.stop();
      await queue.shutdown(config.shutdownTimeoutMs);
      reconciler.stop();
      rollouts?.stop();
      appStatus?.stop();
      await elector?.stop();
      await signers.close();
      await cache.stop();
      await Promise.all(
        [health, metricsServer].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
      );
      log.info("Stopped ghat");
    },
  };
}

/** `ghat run`: parse flags, start, stop gracefully on SIGTERM/SIGINT within a bound. */
export async function runCommand(argv: string[]): Promise<number> {
  const flags = argv.slice(0, argv.includes("--") ? argv.indexOf("--") : argv.length);
  if (flags.includes("--help") || flags.includes("-h")) {
    process.stdout.write(usage());
    return 0;
  }
  if (flags.includes("--version") || flags.includes("-v")) {
    process.stdout.write(`${versionLine()}\n`);
    return 0;
  }
  let config: Config;
  try {
    config = parseConfig(argv, process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) process.stderr.write(`ghat: ${problem}\n`);
    return 2;
  }
  const noAccess = kubeAccessProblem(config, process.env);
  if (noAccess) {
    process.stderr.write(`ghat: ${noAccess}\n`);
    return 2;
  }
  const operator = await startOperator(config);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  const bound = setTimeout(() => process.exit(1), 25_000);
  bound.unref();
  await operator.stop();
  return 0;
}

// `node dist/main.js [flags]` runs the operator directly (as the container does).
if (import.meta.main) {
  runCommand(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`ghat: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

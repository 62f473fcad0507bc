import { KubeConfig } from "@kubernetes/client-node";
import type { AddressInfo } from "node:net";
import { type Clock, systemClock } from "./clock.ts";
import { type Config, parseConfig, usage } from "./config.ts";
import { AppResolver } from "./controller/apps.ts";
import { Controller } from "./controller/controller.ts";
import { Reconciler } from "./controller/reconciler.ts";
import { createGateway } from "./github/gateway.ts";
import { parsePrivateKey } from "./github/privatekey.ts";
import { startHealthServer } from "./health.ts";
import { ClusterCache } from "./kube/cache.ts";
import { KubeClient } from "./kube/kube.ts";
import { createLogger, type Logger } from "./log.ts";

export interface Operator {
  /** Port of /healthz and /readyz. */
  healthPort: number;
  controller: Controller;
  cache: ClusterCache;
  stop(): Promise<void>;
}

/** The composition root: builds the real clients and starts the operator. */
export async function startOperator(config: Config, deps: { clock?: Clock; log?: Logger } = {}): Promise<Operator> {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? createLogger({ level: config.logLevel, pretty: config.logFormat === "pretty" });
  const kubeConfig = new KubeConfig();
  if (config.kubeconfig) kubeConfig.loadFromFile(config.kubeconfig);
  else kubeConfig.loadFromCluster();

  const kube = new KubeClient(kubeConfig, clock);
  let controller: Controller | undefined;
  const cache = new ClusterCache({
    kubeConfig,
    clock,
    log,
    namespaces: config.namespaces,
    onChange: (kind, obj, event) => controller?.onChange(kind, obj, event),
    onResync: (kind) => controller?.onResync(kind),
  });
  controller = new Controller({ clock, log, cache, workers: config.workers, operatorNamespace: config.operatorNamespace });
  const queue = controller.queue;
  const reconciler = new Reconciler({
    clock,
    log,
    kube,
    source: {
      token: (ns, name) => cache.token(ns, name),
      secret: async (ns, name) => cache.managedSecret(ns, name) ?? (await cache.readSecret(ns, name)),
    },
    apps: new AppResolver({
      operatorNamespace: config.operatorNamespace,
      parseKey: parsePrivateKey,
      source: {
        app: (kind, ns, name) => cache.app(kind, ns, name),
        keySecret: (ns, name) => cache.keySecret(ns, name),
        namespaceLabels: (ns) => cache.namespaceLabels(ns),
      },
    }),
    github: createGateway({ clock, log, timeoutMs: config.githubTimeoutMs }),
    requeueAt: (key, at) => queue.addAt(key, at),
    forget: (key) => queue.forget(key),
    random: Math.random,
    options: {
      revokeSupersededAfterMs: config.revokeSupersededAfterMs,
      maxRevokeAttemptsOnDelete: 5,
      terminalRetryMs: config.terminalRetryMs,
    },
  });
  controller.bind(reconciler);

  const health = await startHealthServer(config.healthPort, config.bindAddress, {
    live: () => true,
    ready: () => cache.synced,
  });
  await cache.start();
  log.info({ namespaces: config.namespaces.length ? config.namespaces : "all" }, "Started ghat");

  return {
    healthPort: (health.address() as AddressInfo).port,
    controller,
    cache,
    async stop() {
      log.info("Stopping ghat");
      await queue.shutdown();
      await cache.stop();
      await new Promise<void>((resolve) => health.close(() => resolve()));
      log.info("Stopped ghat");
    },
  };
}

/** `ghat run`: parse flags, start, stop on SIGTERM/SIGINT. */
export async function runCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usage());
    return 0;
  }
  let config: Config;
  try {
    config = parseConfig(argv, process.env);
  } catch (err) {
    process.stderr.write(`ghat: ${(err as Error).message}\n`);
    return 2;
  }
  const operator = await startOperator(config);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await operator.stop();
  return 0;
}

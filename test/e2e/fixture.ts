import { mkdirSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { kubeconfigPath, newNamespace } from "../support/cluster.ts";
import { TcpProxy } from "./faultkit.ts";
import { allLogs, appId, Kube, leaks, type RunningOperator, runOperator, startGitHub } from "./operator.ts";
import { killAll, localFlags, OperatorProcess } from "./processes.ts";

/** The simulator as GitHub, and the App's key pair it trusts. */
export type GitHub = Awaited<ReturnType<typeof startGitHub>>;

export interface SuiteOptions {
  /** Lifetime of the simulator's tokens (s); GitHub's hour when absent. */
  tokenLifetimeSeconds?: number;
  /** Starts GitHub in place of `startGitHub` (a suite with its own seed, TLS or git). */
  github?: () => Promise<GitHub>;
  /** A fresh "ghat-system" namespace (`opNs`); every operator gets `--operator-namespace` it. */
  operatorNamespace?: boolean;
  /** A TCP proxy to the API server (`proxy`) that operator processes talk through. */
  proxy?: boolean;
  /** Starts the operator in-process (`op`) with these flags, after `--operator-namespace`. */
  operator?: string[];
  /** The in-process operator's kubeconfig, made once the namespace exists; the admin's when absent. */
  operatorKubeconfig?: () => Promise<string>;
  /** Clean-up once operators, proxy and GitHub are stopped (cluster-scoped leftovers). */
  afterStop?: () => Promise<unknown>;
}

export interface Suite {
  readonly github: GitHub;
  readonly kube: Kube;
  /** The operator namespace (option `operatorNamespace`). */
  readonly opNs: string;
  /** The proxy to the API server (option `proxy`). */
  readonly proxy: TcpProxy;
  /** The in-process operator (option `operator`). */
  readonly op: RunningOperator;
  /** The in-process operator, if it started. */
  readonly running: RunningOperator | undefined;
  /** Every operator process `spawn` started: SIGKILLed after the suite. */
  readonly procs: OperatorProcess[];
  /** Starts the in-process operator again, with the suite's flags (the last one must be stopped). */
  startOperator(): Promise<RunningOperator>;
  /** What an operator process runs with: `localFlags`, `--operator-namespace`, then `flags`. */
  processFlags(flags: string[], options?: { direct?: boolean }): string[];
  /** An operator process, through the proxy (when there is one) unless `direct`. */
  spawn(flags: string[], options?: { direct?: boolean }): OperatorProcess;
  /** The App's key Secret "app-key" in `ns`. */
  createKeySecret(ns: string, pem?: string): Promise<void>;
  /** GitHubApp "app" in `ns`, App 4242 on the simulator with key Secret "app-key". */
  createApp(ns: string, spec?: Record<string, unknown>): Promise<void>;
  /** A fresh namespace with the key Secret and the GitHubApp "app". */
  withApp(prefix: string, app?: Record<string, unknown>, pem?: string): Promise<string>;
  /**
   * No token or key in the operators' logs, events, status or spec. The operators must have
   * logged more than `minLines` lines (the in-process operator: the latest one); `false`: no check.
   */
  expectNoLeaks(options?: { minLines?: number | false }): Promise<void>;
  /** The suite's last test, `expectNoLeaks`, named "leaks no token or key into …" unless `name`. */
  itLeaksNothing(options?: { name?: string; minLines?: number | false }): void;
}

/**
 * The setup every e2e suite shares, as vitest hooks of the calling `describe`: GitHub (the
 * simulator), a Kube client, and as asked an operator namespace, a proxy and the in-process
 * operator; after the suite, operators, proxy and GitHub are stopped. Hooks the suite adds
 * after this call run after this setup and before this teardown.
 */
export function useOperator(options: SuiteOptions = {}): Suite {
  let github: GitHub | undefined;
  let opNs: string | undefined;
  let proxy: TcpProxy | undefined;
  /** The proxy's copy of the admin kubeconfig, for operator processes. */
  let proxyKubeconfig = "";
  let operatorKubeconfig = "";
  let op: RunningOperator | undefined;
  const procs: OperatorProcess[] = [];
  const kube = new Kube(kubeconfigPath());
  const nsFlags = () => (options.operatorNamespace ? ["--operator-namespace", suite.opNs] : []);
  const need = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`useOperator: no ${what} (not asked for, or not started yet)`);
    return value;
  };

  const suite: Suite = {
    get github() {
      return need(github, "GitHub");
    },
    kube,
    get opNs() {
      return need(opNs, "operator namespace");
    },
    get proxy() {
      return need(proxy, "proxy");
    },
    get op() {
      return need(op, "in-process operator");
    },
    get running() {
      return op;
    },
    procs,
    async startOperator() {
      op = await runOperator(operatorKubeconfig || kubeconfigPath(), [
        ...nsFlags(),
        ...(options.operator ?? []),
      ]);
      return op;
    },
    processFlags(flags, { direct = false } = {}) {
      return [...localFlags(direct || !proxy ? kubeconfigPath() : proxyKubeconfig), ...nsFlags(), ...flags];
    },
    spawn(flags, spawnOptions) {
      const p = new OperatorProcess(suite.processFlags(flags, spawnOptions));
      procs.push(p);
      return p;
    },
    createKeySecret(ns, pem = suite.github.keys.privateKeyPkcs1Pem) {
      return kube.createKeySecret(ns, "app-key", pem);
    },
    createApp(ns, spec = {}) {
      return kube.createApp(ns, "app", {
        appId,
        privateKeySecretRef: { name: "app-key" },
        baseUrl: suite.github.sim.url,
        ...spec,
      });
    },
    async withApp(prefix, app = {}, pem) {
      const ns = await newNamespace(prefix);
      await suite.createKeySecret(ns, pem);
      await suite.createApp(ns, app);
      return ns;
    },
    async expectNoLeaks({ minLines = 0 } = {}) {
      const lines = options.operator ? [...allLogs] : procs.flatMap((p) => p.lines);
      if (minLines !== false)
        expect((options.operator ? suite.op.logs : lines).length).toBeGreaterThan(minLines);
      expect(await leaks(suite.github, lines)).toEqual([]);
    },
    itLeaksNothing({ name = "leaks no token or key into logs, events, status or spec", minLines } = {}) {
      it(name, () => suite.expectNoLeaks(minLines === undefined ? {} : { minLines }));
    },
  };

  beforeAll(async () => {
    const { tokenLifetimeSeconds } = options;
    github = await (options.github?.() ?? startGitHub(tokenLifetimeSeconds ? { tokenLifetimeSeconds } : {}));
    if (options.operatorNamespace) opNs = await newNamespace("ghat-system");
    if (options.proxy) {
      proxy = await TcpProxy.start(TcpProxy.target(kubeconfigPath()));
      proxyKubeconfig = proxy.kubeconfig(kubeconfigPath());
    }
    if (options.operator) {
      if (options.operatorKubeconfig) operatorKubeconfig = await options.operatorKubeconfig();
      await suite.startOperator();
    }
  });
  afterAll(async () => {
    await killAll(procs);
    await op?.stop();
    await proxy?.close();
    await github?.sim.close();
    await options.afterStop?.();
  });
  return suite;
}

/** Writes `.local/<file>`: what a suite leaves behind for diagnosing a failure, or its figures. */
export function writeLocal(file: string, text: string): void {
  mkdirSync(".local", { recursive: true });
  writeFileSync(`.local/${file}`, text);
}

/**
 * Benchmark building blocks: a control plane, simulators, the operator in its own process
 * (so its memory and CPU are its own), token creation at a chosen concurrency, and watches
 * that timestamp Ready and every Secret and status write. Scenarios (scenarios.ts) combine
 * them; bench/run.ts writes bench/results.md and test/e2e/bench.test.ts asserts the counts.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesObject,
  ListWatch,
  Watch,
} from "@kubernetes/client-node";
import { group, version } from "../src/api/meta.ts";
import { shareConnections } from "../src/kube/instrument.ts";
import { generateAppKeyPair } from "../src/sim/keys.ts";
import { type Simulator, type SimulatorOptions, startSimulator } from "../src/sim/simulator.ts";

const run = promisify(execFile);
const root = new URL("../", import.meta.url).pathname;

export const appId = 4242;
export const installationId = 9001;
export const owner = "acme";

export interface Kube {
  kubeconfig: string;
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
}

export function kube(kubeconfig: string): Kube {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  shareConnections(kc);
  return {
    kubeconfig,
    kc,
    core: kc.makeApiClient(CoreV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
  };
}

export async function kubectl(k: Kube, args: string[], input?: string): Promise<string> {
  const child = run("kubectl", ["--kubeconfig", k.kubeconfig, ...args], { maxBuffer: 256 << 20 });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  return (await child).stdout;
}

/** A simulator with one App installed on "acme", and its keys. */
export async function github(options: SimulatorOptions = {}) {
  const keys = generateAppKeyPair();
  const sim: Simulator = await startSimulator({
    ...options,
    seed: {
      apps: [
        {
          id: appId,
          clientId: "Iv23liBench",
          slug: "bench",
          name: "bench",
          owner,
          publicKeys: [keys.publicKeyPem],
        },
      ],
      installations: [
        {
          id: installationId,
          appId,
          account: { login: owner, type: "Organization" },
          permissions: { contents: "write", metadata: "read", issues: "write", pull_requests: "write" },
          repositorySelection: "all",
        },
      ],
      repositories: [{ id: 501, owner, name: "app", private: true }],
    },
  });
  return { sim, keys };
}

/** Mints the simulator answered with 201. */
export function mints(sim: Simulator): number {
  return sim.counts().byRouteStatus["apps/create-installation-access-token 201"] ?? 0;
}

/** Namespace + key Secret + GitHubApp "app" pointing at `sim`. */
export async function namespaceWithApp(
  k: Kube,
  gh: Awaited<ReturnType<typeof github>>,
  name: string,
): Promise<void> {
  await k.core.createNamespace({ body: { metadata: { name } } });
  await k.core.createNamespacedSecret({
    namespace: name,
    body: { metadata: { name: "app-key" }, stringData: { "private-key.pem": gh.keys.privateKeyPkcs1Pem } },
  });
  await k.custom.createNamespacedCustomObject({
    group,
    version,
    namespace: name,
    plural: "githubapps",
    body: {
      apiVersion: `${group}/${version}`,
      kind: "GitHubApp",
      metadata: { name: "app" },
      spec: { appId, privateKeySecretRef: { name: "app-key" }, baseUrl: gh.sim.url },
    },
  });
}

export interface TokenSpec {
  namespace: string;
  name: string;
  spec: Record<string, unknown>;
}

export function tokenSpec(namespace: string, name: string, extra: Record<string, unknown> = {}): TokenSpec {
  return {
    namespace,
    name,
    spec: {
      appRef: { name: "app" },
      installation: { owner },
      permissions: { contents: "read" },
      secrets: [{ name: `${name}-token` }],
      ...extra,
    },
  };
}

/** Creates the tokens `concurrency` at a time; returns when each create was sent. */
export async function createTokens(
  k: Kube,
  tokens: TokenSpec[],
  concurrency = 32,
): Promise<Map<string, number>> {
  const sent = new Map<string, number>();
  let next = 0;
  const worker = async () => {
    for (;;) {
      const t = tokens[next++];
      if (!t) return;
      sent.set(`${t.namespace}/${t.name}`, Date.now());
      await k.custom.createNamespacedCustomObject({
        group,
        version,
        namespace: t.namespace,
        plural: "githubapptokens",
        body: {
          apiVersion: `${group}/${version}`,
          kind: "GitHubAppToken",
          metadata: { name: t.name },
          spec: t.spec,
        },
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return sent;
}

interface TokenObj extends KubernetesObject {
  status?: {
    expiresAt?: string;
    conditions?: { type: string; status: string; reason: string }[];
  };
}
interface SecretObj extends KubernetesObject {
  data?: Record<string, string>;
}

/**
 * Watches every GitHubAppToken and managed Secret: when each token first became Ready, and
 * every write ghat made, classified as at a rotation (the token changed) or between rotations.
 */
export class Observer {
  readonly readyAt = new Map<string, number>();
  /** Per Secret: writes that changed the token / writes that did not. */
  secretRotations = 0;
  secretOtherWrites = 0;
  statusRotations = 0;
  statusOtherWrites = 0;
  /** Every token hash seen in a Secret. */
  readonly tokenHashes = new Set<string>();
  /** Smallest expires-at minus now seen in any Secret, ms. */
  minRemainingMs = Number.POSITIVE_INFINITY;
  readonly #k: Kube;
  readonly #secretHash = new Map<string, string>();
  readonly #statusSeen = new Map<string, { rv: string; expiresAt: string; generation: number }>();
  readonly #secretExpiry = new Map<string, number>();
  #watches: ListWatch<KubernetesObject>[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** Only namespaces with this prefix count. */
  readonly #prefix: string;

  constructor(k: Kube, namespacePrefix = "") {
    this.#k = k;
    this.#prefix = namespacePrefix;
  }

  async start(): Promise<void> {
    const { kc, core, custom } = this.#k;
    const tokens = new ListWatch<KubernetesObject>(
      `/apis/${group}/${version}/githubapptokens`,
      new Watch(kc),
      async () =>
        (await custom.listClusterCustomObject({ group, version, plural: "githubapptokens" })) as never,
      false,
    );
    tokens.on("add", (o) => this.#token(o as TokenObj));
    tokens.on("update", (o) => this.#token(o as TokenObj));
    const secrets = new ListWatch<KubernetesObject>(
      "/api/v1/secrets",
      new Watch(kc),
      async () =>
        (await core.listSecretForAllNamespaces({
          labelSelector: "app.kubernetes.io/managed-by=ghat",
        })) as never,
      false,
      "app.kubernetes.io/managed-by=ghat",
    );
    secrets.on("add", (o) => this.#secret(o as SecretObj));
    secrets.on("update", (o) => this.#secret(o as SecretObj));
    secrets.on("delete", (o) => this.#secretExpiry.delete(keyOf(o)));
    this.#watches = [tokens, secrets];
    await Promise.all(this.#watches.map((w) => w.start()));
    this.#timer = setInterval(() => this.#sampleRemaining(), 250);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.all(this.#watches.map((w) => w.stop()));
  }

  /** Resets the write counters (not readyAt). */
  resetWrites(): void {
    this.secretRotations = 0;
    this.secretOtherWrites = 0;
    this.statusRotations = 0;
    this.statusOtherWrites = 0;
    this.minRemainingMs = Number.POSITIVE_INFINITY;
  }

  #counts(o: KubernetesObject): boolean {
    return (o.metadata?.namespace ?? "").startsWith(this.#prefix);
  }

  #token(o: TokenObj): void {
    if (!this.#counts(o)) return;
    const key = keyOf(o);
    const ready = o.status?.conditions?.find((c) => c.type === "Ready");
    if (ready?.status === "True" && !this.readyAt.has(key)) this.readyAt.set(key, Date.now());
    const rv = o.metadata?.resourceVersion ?? "";
    const generation = o.metadata?.generation ?? 0;
    const expiresAt = o.status?.expiresAt ?? "";
    const before = this.#statusSeen.get(key);
    this.#statusSeen.set(key, { rv, expiresAt, generation });
    if (!before || before.rv === rv || before.generation !== generation) return;
    if (before.expiresAt !== expiresAt) this.statusRotations++;
    else this.statusOtherWrites++;
  }

  #secret(o: SecretObj): void {
    if (!this.#counts(o)) return;
    const key = keyOf(o);
    const hash = o.metadata?.annotations?.["ghat.dev/token-hash"] ?? "";
    const expiresAt = Date.parse(o.metadata?.annotations?.["ghat.dev/expires-at"] ?? "");
    if (Number.isFinite(expiresAt)) {
      this.#secretExpiry.set(key, expiresAt);
      this.minRemainingMs = Math.min(this.minRemainingMs, expiresAt - Date.now());
    }
    const before = this.#secretHash.get(key);
    this.#secretHash.set(key, hash);
    if (hash) this.tokenHashes.add(hash);
    if (before === undefined) return;
    if (before !== hash) this.secretRotations++;
    else this.secretOtherWrites++;
  }

  #sampleRemaining(): void {
    const now = Date.now();
    for (const expiresAt of this.#secretExpiry.values()) {
      this.minRemainingMs = Math.min(this.minRemainingMs, expiresAt - now);
    }
  }
}

function keyOf(o: KubernetesObject): string {
  return `${o.metadata?.namespace}/${o.metadata?.name}`;
}

/** The shipped artifact: the bundle the image's ENTRYPOINT runs (`npm run bundle`). */
export const bundle = join(root, "dist/ghat.mjs");

/**
 * How the image starts ghat, read from the Dockerfile so the benchmark cannot drift from it:
 * the Node flags of its ENTRYPOINT (between node and the bundle) and its environment
 * (NODE_OPTIONS, MALLOC_ARENA_MAX, NODE_ENV). BENCH_NODE_FLAGS replaces the flags, for
 * experiments.
 */
export function imageCommand(dockerfile = join(root, "Dockerfile")): {
  nodeFlags: string[];
  env: Record<string, string>;
} {
  const text = readFileSync(dockerfile, "utf8");
  const entry = text.match(/^ENTRYPOINT\s+(\[.*\])\s*$/m)?.[1];
  if (!entry) throw new Error(`${dockerfile}: no ENTRYPOINT [...] line`);
  const argv = JSON.parse(entry) as string[];
  const at = argv.indexOf("dist/ghat.mjs");
  if (at < 1) throw new Error(`${dockerfile}: the ENTRYPOINT does not run dist/ghat.mjs`);
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^ENV\s+([A-Z_]+)=("([^"]*)"|(\S*))\s*$/gm)) {
    const [, name = "", , quoted, bare] = m;
    if (["NODE_OPTIONS", "MALLOC_ARENA_MAX", "NODE_ENV"].includes(name)) env[name] = quoted ?? bare ?? "";
  }
  const override = process.env.BENCH_NODE_FLAGS;
  return { nodeFlags: override === undefined ? argv.slice(1, at) : override.split(" ").filter(Boolean), env };
}

/** The operator as a pod runs it, in its own process. */
export class Operator {
  readonly proc: ChildProcess;
  readonly started: Promise<{ metricsPort: number }>;
  readonly startedAt = Date.now();
  #tail = "";

  /**
   * `entry`: src/main.ts, or dist/ghat.mjs (the bundle the image runs; `bundle` above), which
   * is started with the image's Node flags and environment (imageCommand). `nodeFlags`: extra
   * Node flags (profiling).
   */
  constructor(
    kubeconfig: string,
    flags: string[] = [],
    entry = join(root, "src/main.ts"),
    nodeFlags: string[] = [],
  ) {
    const image = entry === bundle ? imageCommand() : { nodeFlags: [], env: {} };
    this.proc = spawn(
      process.execPath,
      [
        ...image.nodeFlags,
        ...nodeFlags,
        entry,
        "--kubeconfig",
        kubeconfig,
        "--metrics-port",
        "0",
        "--health-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        "--operator-namespace",
        "default",
        // The simulator's tokens here live seconds, and bursts of thousands of new tokens land
        // in one namespace: accept both (real GitHub would pace such a burst at ~180 a minute).
        "--min-token-lifetime",
        "5s",
        "--min-mint-interval",
        "1s",
        "--app-mint-rate",
        "100000",
        "--app-mint-burst",
        "100000",
        "--installation-mint-rate",
        "100000",
        "--installation-mint-burst",
        "100000",
        ...flags,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...image.env } },
    );
    this.started = new Promise((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        this.#tail = (this.#tail + chunk.toString()).slice(-20_000);
        for (const line of chunk.toString().split("\n")) {
          if (!line.includes('"Started ghat"')) continue;
          resolve({ metricsPort: Number((JSON.parse(line) as { metricsPort: number }).metricsPort) });
        }
      };
      this.proc.stdout?.on("data", onData);
      this.proc.stderr?.on("data", onData);
      this.proc.once("exit", (code) =>
        reject(new Error(`operator exited ${code}: ${this.#tail.slice(-2000)}`)),
      );
    });
  }

  async metrics(): Promise<string> {
    const { metricsPort } = await this.started;
    return (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  }

  /** Peak and current resident memory, KiB. */
  memory(): { peakKiB: number; rssKiB: number } {
    const status = readFileSync(`/proc/${this.proc.pid}/status`, "utf8");
    return {
      peakKiB: Number(status.match(/VmHWM:\s+(\d+)/)?.[1] ?? 0),
      rssKiB: Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0),
    };
  }

  /** User + system CPU seconds so far. */
  cpuSeconds(): number {
    return cpuSecondsOf(this.proc.pid ?? 0);
  }

  /**
   * Resident memory by mapping, KiB: "node" (the binary's pages: code and data the process
   * touched), "[anon]" (V8's heap, malloc arenas, WebAssembly memory), "[heap]" (the brk
   * malloc heap) and shared libraries; entries under 1 MiB are left out.
   */
  rssByMapping(): Record<string, number> {
    const out: Record<string, number> = {};
    let name = "";
    for (const line of readFileSync(`/proc/${this.proc.pid}/smaps`, "utf8").split("\n")) {
      const m = line.match(/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/);
      if (m) name = (m[1] || "[anon]").split("/").pop() ?? "";
      else if (line.startsWith("Rss:")) out[name] = (out[name] ?? 0) + Number(line.split(/\s+/)[1]);
    }
    return Object.fromEntries(Object.entries(out).filter(([, v]) => v >= 1024));
  }

  /**
   * CPU seconds by thread name (threads of one name summed): the main thread, V8's workers,
   * libuv's pool; and "of which kernel": the system time of all of them (syscalls, and the
   * loopback network stack's work done on the sender's time).
   */
  threadCpu(): Record<string, number> {
    const out: Record<string, number> = { "of which kernel": 0 };
    const pid = this.proc.pid ?? 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
        const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / 100;
        out["of which kernel"] = (out["of which kernel"] ?? 0) + Number(f[12]) / 100;
      } catch {
        // the thread ended
      }
    }
    return out;
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once("exit", resolve));
    this.proc.kill(signal);
    await exited;
  }
}

export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 (1-based) of /proc/pid/stat; index 11, 12 here.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Sum of a Prometheus metric's samples whose labels include `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/** Number of series of a metric. */
export function metricSeries(text: string, name: string): number {
  return text.split("\n").filter((l) => l.startsWith(`${name}{`)).length;
}

/** ghat's requests by verb and resource ("get secrets", "list secrets", "patch secrets"…), from its metrics. */
export function requestsOf(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^ghat_kube_requests_total\{verb="(\w+)",resource="([^"]*)"\} (\S+)$/);
    if (m) out[`${m[1]} ${m[2]}`] = Number(m[3]);
  }
  return out;
}

/**
 * ghat's write requests (post, put, patch, delete) by resource, from its metrics; the leader
 * election's Lease renewals are not writes of tokens and are left out (requestsOf has them).
 */
export function writesOf(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m = line.match(/^ghat_kube_requests_total\{verb="(\w+)",resource="([^"]*)"\} (\S+)$/);
    if (!m || !["post", "put", "patch", "delete"].includes(m[1] ?? "") || m[2] === "leases") continue;
    out[`${m[1]} ${m[2]}`] = Number(m[3]);
  }
  return out;
}

export function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

export const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

/** API server requests by verb, from its own metrics (every client). */
export async function apiserverRequests(k: Kube): Promise<Record<string, number>> {
  const text = await kubectl(k, ["get", "--raw", "/metrics"]);
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (!line.startsWith("apiserver_request_total{")) continue;
    const verb = line.match(/verb="(\w+)"/)?.[1] ?? "";
    out[verb] = (out[verb] ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return out;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

/** Resolves when `check` is true, polling every `everyMs`; rejects after `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 100,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

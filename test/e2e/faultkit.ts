import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { parse, stringify } from "yaml";
import type { Simulator } from "../../src/sim/simulator.ts";
import { type Kube, ready } from "./operator.ts";

/**
 * What every fault test (and the soak run) checks, sampled from the outside the way a consumer
 * sees it: each managed Secret, read from the API server, judged by what GitHub (the
 * simulator) knows of the token in it.
 *
 * - A Secret, once written, always holds a token GitHub issued and has not revoked (the old
 *   token stays while a refresh fails; ghat revokes only what it has replaced).
 * - While GitHub answers, no Secret holds less than its minimum remaining lifetime. Tokens that
 *   were already below it when GitHub came back are "owed": they must recover within the
 *   bound the test states (`recovered`), and are not counted twice.
 */
export class Monitor {
  readonly violations: string[] = [];
  /** Samples taken per Secret (a test checks the monitor actually looked). */
  readonly samples = new Map<string, number>();
  readonly #remaining = new Map<string, number>();
  readonly #tokens = new Map<string, string>();
  readonly #written = new Set<string>();
  /**
   * Secret → the read sequence number at which the test deleted it by hand: its absence is
   * quiet until a read that began after the delete finds it again. (A read that began before
   * may still answer with the old Secret; comparing uids instead fails when the monitor never
   * read the Secret before the delete.)
   */
  readonly #handDeleted = new Map<string, { read: number; uid: string | undefined }>();
  readonly #uids = new Map<string, string | undefined>();
  #reads = 0;
  /** Secret → the token it held when GitHub came back, still owed a refresh. */
  #owed = new Map<string, string>();
  #githubAnswers = true;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  readonly kube: Kube;
  readonly sim: Simulator;
  readonly ns: string;
  readonly secrets: string[];
  readonly minRemainingMs: number;

  constructor(kube: Kube, sim: Simulator, ns: string, secrets: string[], minRemainingMs: number) {
    this.kube = kube;
    this.sim = sim;
    this.ns = ns;
    this.secrets = secrets;
    this.minRemainingMs = minRemainingMs;
  }

  start(intervalMs = 200): void {
    this.#timer = setInterval(() => void this.#sample(), intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await expect.poll(() => this.#busy, { timeout: 10_000, interval: 20 }).toBe(false);
  }

  /**
   * Refreshing cannot succeed for a while: GitHub does not answer usefully (an outage, a
   * limit, a suspended installation) or no operator can act (API server down, no leader).
   */
  outage(): void {
    this.#githubAnswers = false;
  }

  /**
   * Refreshing can succeed again: what is below its minimum now, or within `graceMs` of it
   * (one retry delay: a retry already scheduled may land that late), is owed a refresh.
   */
  restored(graceMs = 0): void {
    this.#githubAnswers = true;
    this.#owed = new Map(
      [...this.#remaining]
        .filter(([, ms]) => ms < this.minRemainingMs + graceMs)
        .map(([name]) => [name, this.#tokens.get(name) ?? ""]),
    );
  }

  /** The test deletes this Secret itself: its absence is not a violation until it is back. */
  deletedByHand(secret: string): void {
    this.#handDeleted.set(secret, { read: this.#reads, uid: this.#uids.get(secret) });
  }

  /** Secrets still waiting for their refresh after GitHub came back. */
  owed(): string[] {
    return [...this.#owed.keys()];
  }

  async #sample(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      for (const name of this.secrets) await this.#check(name);
    } finally {
      this.#busy = false;
    }
  }

  async #check(name: string): Promise<void> {
    let secret: Awaited<ReturnType<Kube["core"]["readNamespacedSecret"]>> | undefined;
    const read = ++this.#reads;
    try {
      // A read can hang while etcd restarts: give up on it after 2 s, keep sampling.
      secret = await Promise.race([
        this.kube.core.readNamespacedSecret({ namespace: this.ns, name }),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error("read timed out")), 2_000)),
      ]);
    } catch (err) {
      // Not there, or the API server is down: only a Secret that was written and then
      // vanished while the API server answers is a violation.
      if ((err as { code?: number }).code === 404 && this.#written.has(name) && !this.#handDeleted.has(name))
        this.#violation(`${name}: Secret disappeared`);
      return;
    }
    // A read that began before the test's delete may still show the old Secret.
    // A read may also begin after the call but reach the server before the delete: a Secret
    // with the uid last read before the delete is still the old one.
    const uid = secret.metadata?.uid;
    this.#uids.set(name, uid);
    const deleted = this.#handDeleted.get(name);
    if (deleted !== undefined) {
      if (read <= deleted.read || (deleted.uid !== undefined && deleted.uid === uid)) return;
      this.#handDeleted.delete(name);
    }
    const token = Buffer.from(secret.data?.token ?? "", "base64").toString("utf8");
    this.samples.set(name, (this.samples.get(name) ?? 0) + 1);
    if (!token) {
      if (this.#written.has(name)) this.#violation(`${name}: Secret holds no token`);
      return;
    }
    this.#written.add(name);
    const issued = this.sim.state.tokens.get(token);
    if (!issued) {
      this.#violation(`${name}: holds a token GitHub never issued`);
      return;
    }
    if (issued.revoked) this.#violation(`${name}: holds a revoked token`);
    const remaining = issued.expiresAt - this.sim.now();
    this.#remaining.set(name, remaining);
    this.#tokens.set(name, token);
    // An owed Secret is paid once it holds another token.
    if (this.#owed.has(name) && this.#owed.get(name) !== token) this.#owed.delete(name);
    if (remaining < this.minRemainingMs && this.#githubAnswers && !this.#owed.has(name)) {
      this.#violation(`${name}: ${remaining} ms left (minimum ${this.minRemainingMs}) while GitHub answers`);
      // Reported once per dip, not at every sample.
      this.#owed.set(name, token);
    }
  }

  #violation(what: string): void {
    this.violations.push(`${new Date().toISOString()} ${what}`);
  }
}

/** A Monitor of the Secret `<name>-token` of each token in `names`. */
export function monitorTokens(
  kube: Kube,
  sim: Simulator,
  ns: string,
  names: string[],
  minRemainingMs: number,
) {
  return new Monitor(
    kube,
    sim,
    ns,
    names.map((n) => `${n}-token`),
    minRemainingMs,
  );
}

/**
 * Waits until every token is Ready (reason Issued) with a token GitHub accepts and at least the minimum
 * lifetime left in each of its Secrets; returns how long that took (ms).
 */
export async function recovered(
  kube: Kube,
  sim: Simulator,
  ns: string,
  names: string[],
  minRemainingMs: number,
  timeout: number,
): Promise<number> {
  const from = Date.now();
  /** Undefined when healthy, else what is wrong (for the failure message). */
  const unhealthy = async (name: string): Promise<string | undefined> => {
    const t = await kube.getToken(ns, name).catch(() => undefined);
    const r = ready(t);
    // Ready=True with an error reason means "still holding the old token, retrying".
    if (r?.status !== "True" || r.reason !== "Issued")
      return `${name}: Ready=${r?.status} ${r?.reason} "${r?.message ?? ""}"`;
    const token = await kube.secretValue(ns, `${name}-token`).catch(() => undefined);
    const issued = token ? sim.state.tokens.get(token) : undefined;
    if (issued === undefined) return `${name}: the Secret holds no token GitHub issued`;
    if (!sim.checkToken(token ?? "").live) return `${name}: the Secret's token is dead`;
    const left = issued.expiresAt - sim.now();
    return left >= minRemainingMs ? undefined : `${name}: ${left} ms left`;
  };
  const problems = async () => (await Promise.all(names.map(unhealthy))).filter((p) => p !== undefined);
  try {
    await expect.poll(problems, { timeout, interval: 100 }).toEqual([]);
  } catch {
    throw new Error(`not recovered within ${timeout} ms: ${(await problems()).join("; ") || "(just now)"}`);
  }
  return Date.now() - from;
}

/**
 * A TCP proxy in front of the API server: the operator's kubeconfig points here, so a test can
 * drop every connection (watches included) or cut the operator off, without touching the
 * API server other clients use.
 */
export class TcpProxy {
  readonly #sockets = new Set<Socket>();
  #cut = false;

  readonly #server: Server;
  readonly port: number;

  private constructor(server: Server, port: number) {
    this.#server = server;
    this.port = port;
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => {
      if (!proxy || proxy.#cut) {
        client.destroy();
        return;
      }
      const upstream = createConnection(target);
      const pair = [client, upstream];
      for (const s of pair) {
        proxy.#sockets.add(s);
        s.on("error", () => undefined);
        s.on("close", () => {
          if (proxy) proxy.#sockets.delete(s);
          for (const other of pair) other.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    proxy = new TcpProxy(server, typeof address === "object" && address ? address.port : 0);
    return proxy;
  }

  /** Connections open now (each proxied connection counts twice: both ends). */
  get connections(): number {
    return this.#sockets.size;
  }

  /** Drops every open connection; new ones are accepted. */
  dropAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  /** Cuts the operator off: drops every connection and refuses new ones until `restore`. */
  cut(): void {
    this.#cut = true;
    this.dropAll();
  }

  restore(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** A copy of `kubeconfig` whose server is this proxy. */
  kubeconfig(kubeconfig: string): string {
    const doc = parse(readFileSync(kubeconfig, "utf8")) as {
      clusters: { cluster: { server: string } }[];
    };
    for (const c of doc.clusters) {
      const url = new URL(c.cluster.server);
      url.host = `127.0.0.1:${this.port}`;
      c.cluster.server = url.toString().replace(/\/$/, "");
    }
    const path = join(mkdtempSync(join(tmpdir(), "ghat-proxy-")), "kubeconfig");
    writeFileSync(path, stringify(doc));
    return path;
  }

  /** Host and port of the API server in `kubeconfig`. */
  static target(kubeconfig: string): { host: string; port: number } {
    const doc = parse(readFileSync(kubeconfig, "utf8")) as { clusters: { cluster: { server: string } }[] };
    const url = new URL(doc.clusters[0]?.cluster.server ?? "");
    return { host: url.hostname, port: Number(url.port || 443) };
  }
}

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { expect } from "vitest";
import type { Simulator } from "../../src/sim/simulator.ts";
import type { Kube } from "./operator.ts";
import { OperatorProcess } from "./processes.ts";

/**
 * Helpers of the hostile-tenant suite (test/e2e/isolation.test.ts): an operator process in a
 * memory-limited cgroup that is restarted when it dies, GitHub look-alikes that answer with
 * hostile bodies, a CONNECT proxy, and a monitor of a victim tenant's token rotation.
 */

// ---------------------------------------------------------------------------------------------
// The operator, memory-limited and supervised

export interface OperatorExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: string;
  /** The cgroup's OOM-kill count when the process exited. */
  oomKills: number;
  /** The last log lines of the process that died (for the failure message). */
  lastLines: string[];
}

const cgroupRoot = "/sys/fs/cgroup/memory";

/**
 * The operator as a pod runs it: `node src/main.ts`, in a fresh cgroup v1 memory cgroup with a
 * limit (the container's memory limit), restarted when it exits (the kubelet's restart
 * policy). `restarts` counts the deaths; `exits` says how each one died.
 */
export class SupervisedOperator {
  readonly cgroup: string;
  readonly processes: OperatorProcess[] = [];
  readonly exits: OperatorExit[] = [];
  readonly #flags: string[];
  readonly #maxRestarts: number;
  #stopping = false;

  private constructor(flags: string[], cgroup: string, maxRestarts: number) {
    this.#flags = flags;
    this.cgroup = cgroup;
    this.#maxRestarts = maxRestarts;
  }

  /** Creates the cgroup (`limitBytes` of memory, no extra swap) and starts the first process. */
  static start(
    flags: string[],
    options: { limitBytes: number; name: string; maxRestarts?: number },
  ): SupervisedOperator {
    if (!existsSync(join(cgroupRoot, "cgroup.procs")))
      throw new Error(`no cgroup v1 memory hierarchy at ${cgroupRoot}: the suite needs one (and root)`);
    const cgroup = join(cgroupRoot, options.name);
    mkdirSync(cgroup, { recursive: true });
    writeFileSync(join(cgroup, "memory.limit_in_bytes"), String(options.limitBytes));
    // With swap, a process over the limit would page instead of being killed: forbid it.
    try {
      writeFileSync(join(cgroup, "memory.memsw.limit_in_bytes"), String(options.limitBytes));
    } catch {
      // No swap accounting on this kernel: nothing to forbid.
    }
    const op = new SupervisedOperator(flags, cgroup, options.maxRestarts ?? 10);
    op.#spawn();
    return op;
  }

  #spawn(): void {
    const p = new OperatorProcess(this.#flags);
    this.processes.push(p);
    const pid = p.proc.pid;
    if (pid !== undefined) writeFileSync(join(this.cgroup, "cgroup.procs"), String(pid));
    p.proc.once("exit", (code, signal) => {
      if (this.#stopping) return;
      this.exits.push({
        code,
        signal,
        at: new Date().toISOString(),
        oomKills: this.memory().oomKills,
        lastLines: p.lines.slice(-5),
      });
      if (this.exits.length <= this.#maxRestarts) this.#spawn();
    });
  }

  /** The process running now (the latest one). */
  get current(): OperatorProcess {
    const p = this.processes.at(-1);
    if (!p) throw new Error("the operator was never started");
    return p;
  }

  /** How often the operator died and was started again. */
  get restarts(): number {
    return this.exits.length;
  }

  /** Every log line of every process, in order. */
  lines(): string[] {
    return this.processes.flatMap((p) => p.lines);
  }

  /** Memory figures of the cgroup (bytes). */
  memory(): { usage: number; peak: number; limit: number; failcnt: number; oomKills: number } {
    const read = (file: string) => Number(readFileSync(join(this.cgroup, file), "utf8").trim());
    const oom = readFileSync(join(this.cgroup, "memory.oom_control"), "utf8");
    return {
      usage: read("memory.usage_in_bytes"),
      peak: read("memory.max_usage_in_bytes"),
      limit: read("memory.limit_in_bytes"),
      failcnt: read("memory.failcnt"),
      oomKills: Number(oom.match(/oom_kill (\d+)/)?.[1] ?? 0),
    };
  }

  /** Starts a new peak measurement (memory.max_usage_in_bytes back to the current usage). */
  resetPeak(): void {
    writeFileSync(join(this.cgroup, "memory.max_usage_in_bytes"), "0");
  }

  /** Why the operator died, for failure messages. */
  describeExits(): string {
    return this.exits
      .map(
        (e) =>
          `${e.at}: exit ${e.code ?? ""}${e.signal ?? ""} (OOM kills so far ${e.oomKills}); last lines:\n  ${e.lastLines.join("\n  ")}`,
      )
      .join("\n");
  }

  /** Stops the running process (SIGTERM, then SIGKILL after 10 s) and removes the cgroup. */
  async stop(): Promise<void> {
    this.#stopping = true;
    const p = this.processes.at(-1);
    if (p && p.proc.exitCode === null && p.proc.signalCode === null) {
      p.kill("SIGTERM");
      const killer = setTimeout(() => p.kill("SIGKILL"), 10_000);
      await p.exited;
      clearTimeout(killer);
    }
    // The cgroup can be removed once its last task is gone, which may lag the exit a little
    // (expect.poll is not available in afterAll: a bounded retry instead).
    let problem = "";
    for (let attempt = 0; attempt < 100; attempt++) {
      try {
        rmdirSync(this.cgroup);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
        problem = String(err);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`the cgroup ${this.cgroup} could not be removed: ${problem}`);
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP servers on 127.0.0.1

/** A server that only counts the requests it gets (an "internal host" a redirect points at). */
export class CountingServer {
  readonly requests: string[] = [];
  readonly #server: Server;
  readonly url: string;

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async start(): Promise<CountingServer> {
    const server = createServer();
    const s = new CountingServer(server, await listen(server));
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      s.requests.push(`${req.method} ${req.url}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"internal":"secret metadata"}');
    });
    return s;
  }

  close(): Promise<void> {
    return close(this.#server);
  }
}

/** How a hostile GitHub answers the mint of one installation. */
export type MintAnswer = (res: ServerResponse, ctx: { streamed: (bytes: number) => void }) => void;

/**
 * A GitHub look-alike an attacker points a GitHubApp's baseUrl at. It answers the App and
 * installation lookups plausibly and the mint (POST /app/installations/{id}/access_tokens)
 * with whatever `answers` holds for that installation id. Counts mints per installation and
 * the bytes streamed per request.
 */
export class HostileGitHub {
  /** Mint requests per installation id. */
  readonly mints = new Map<number, number>();
  /** Every request, "METHOD path". */
  readonly requests: string[] = [];
  /** Bytes written per streamed answer, per installation id. */
  readonly streamed = new Map<number, number[]>();
  readonly answers = new Map<number, MintAnswer>();
  /** Tokens handed out (to search for in logs). */
  readonly handedOut: string[] = [];
  readonly #server: Server;
  readonly url: string;

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async start(): Promise<HostileGitHub> {
    const server = createServer();
    const url = await listen(server);
    const h = new HostileGitHub(server, url);
    server.on("request", (req: IncomingMessage, res: ServerResponse) => h.#answer(req, res));
    return h;
  }

  mintsOf(id: number): number {
    return this.mints.get(id) ?? 0;
  }

  #answer(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    this.requests.push(`${req.method} ${path}`);
    req.resume();
    res.on("error", () => undefined);
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
      res.end(JSON.stringify(body));
    };
    const mint = path.match(/^(?:\/api\/v3)?\/app\/installations\/(\d+)\/access_tokens$/);
    const installation = path.match(/^(?:\/api\/v3)?\/app\/installations\/(\d+)$/);
    const answer = mint ? this.answers.get(Number(mint[1])) : undefined;
    if (req.method === "POST" && mint) {
      const id = Number(mint[1]);
      this.mints.set(id, this.mintsOf(id) + 1);
      if (answer) {
        const streamed: number[] = this.streamed.get(id) ?? [];
        this.streamed.set(id, streamed);
        const slot = streamed.push(0) - 1;
        answer(res, {
          streamed: (bytes) => {
            streamed[slot] = bytes;
          },
        });
      } else json(404, { message: "Not Found" });
    } else if (req.method === "GET" && installation) {
      json(200, installationJson(Number(installation[1]), "acme"));
    } else if (req.method === "GET" && /^(?:\/api\/v3)?\/(users|orgs)\/[^/]+\/installation$/.test(path)) {
      json(200, installationJson(1, "acme"));
    } else if (req.method === "GET" && /^(?:\/api\/v3)?\/app$/.test(path)) {
      json(200, { id: 4242, name: "hostile", slug: "hostile", client_id: "Iv23liHostile" });
    } else if (req.method === "DELETE" && /^(?:\/api\/v3)?\/installation\/token$/.test(path)) {
      res.writeHead(204);
      res.end();
    } else {
      json(404, { message: "Not Found" });
    }
  }

  /** A token as GitHub would hand it out, remembered for the leak scan. */
  token(): string {
    const t = `ghs_${createHash("sha256").update(String(Math.random())).digest("hex").slice(0, 36)}`;
    this.handedOut.push(t);
    return t;
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return close(this.#server);
  }
}

function installationJson(id: number, login: string) {
  return {
    id,
    app_id: 4242,
    account: { login, type: "Organization" },
    repository_selection: "all",
    permissions: { contents: "write", metadata: "read" },
    suspended_at: null,
  };
}

/** GitHub's `expires_at` format (seconds, Z). */
export function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A 201 mint answer with the body `body()` makes at the time of the request. */
export function created(body: () => unknown): MintAnswer {
  return (res) => {
    res.writeHead(201, { "content-type": "application/json; charset=utf-8" });
    res.end(JSON.stringify(body()));
  };
}

/**
 * A 201 whose JSON body never ends: 16 KiB chunks of the token's characters, one every 2 ms
 * (8 MB/s, so what a client reads and what was sent differ only by a chunk or two, not by the
 * several MiB loopback socket buffers hold), until the client disconnects (or 1 GiB, to keep
 * the loop bounded). Reports the bytes written.
 */
export function endlessBody(): MintAnswer {
  return (res, ctx) => {
    const chunk = Buffer.alloc(16 << 10, "a");
    let sent = 0;
    let closed = false;
    res.on("close", () => {
      closed = true;
    });
    res.writeHead(201, { "content-type": "application/json; charset=utf-8" });
    const pump = () => {
      if (closed) return;
      if (sent >= 1 << 30) {
        res.end('"}');
        return;
      }
      const more = res.write(sent === 0 ? '{"token":"ghs_' : chunk);
      sent += sent === 0 ? 14 : chunk.length;
      ctx.streamed(sent);
      if (more) setTimeout(pump, 2);
      else res.once("drain", pump);
    };
    pump();
  };
}

/** A 302 to `location`. */
export function redirect(location: string): MintAnswer {
  return (res) => {
    res.writeHead(302, { location, "content-type": "text/html" });
    res.end(`<a href="${location}">Found</a>`);
  };
}

/** A 500 whose body is not JSON and carries `marker`. */
export function htmlError(marker: string): MintAnswer {
  return (res) => {
    res.writeHead(500, { "content-type": "text/html" });
    res.end(`<html><body><h1>Internal Server Error</h1><pre>${marker}</pre></body></html>`);
  };
}

/**
 * An HTTP proxy on 127.0.0.1 (a corporate egress proxy): CONNECT tunnels and absolute-URI
 * requests, to 127.0.0.1 only. Counts both.
 */
export class ConnectProxy {
  readonly connects: string[] = [];
  readonly forwarded: string[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #server: Server;
  readonly url: string;

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async start(): Promise<ConnectProxy> {
    const server = createServer();
    const url = await listen(server);
    const p = new ConnectProxy(server, url);
    server.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => {
      const [host = "", port = ""] = (req.url ?? "").split(":");
      p.connects.push(req.url ?? "");
      client.on("error", () => undefined);
      if (host !== "127.0.0.1" && host !== "localhost") {
        client.end("HTTP/1.1 403 Forbidden\r\n\r\n");
        return;
      }
      const upstream = connect(Number(port), "127.0.0.1", () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        if (head.length > 0) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      for (const s of [client, upstream]) {
        p.#sockets.add(s);
        s.on("close", () => {
          p.#sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
      }
      upstream.on("error", () => client.destroy());
    });
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      let target: URL;
      try {
        target = new URL(req.url ?? "");
      } catch {
        res.writeHead(400);
        res.end();
        return;
      }
      p.forwarded.push(`${req.method} ${target.pathname}`);
      if (target.hostname !== "127.0.0.1") {
        res.writeHead(403);
        res.end();
        return;
      }
      const upstream = httpRequest(
        { host: "127.0.0.1", port: target.port, path: target.pathname + target.search, method: req.method },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) upstream.setHeader(k, v);
      upstream.on("error", () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.pipe(upstream);
    });
    return p;
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#server.closeAllConnections();
    return close(this.#server);
  }
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

// ---------------------------------------------------------------------------------------------
// The victim

export interface Rotation {
  /** When the monitor first saw the new token. */
  seenAt: number;
  /** The refresh time the previous Secret announced (ghat.dev/refresh-at). */
  refreshAt: number;
  /** seenAt - refreshAt (negative: early). */
  latenessMs: number;
}

/**
 * Watches a victim tenant's Secret the way its consumer would: every `intervalMs` it reads the
 * Secret, and when the token changes it records how late that was against the refresh time the
 * previous Secret announced. A refresh that is overdue right now counts as late too, so a
 * stalled operator shows even before it rotates again. Also records a Secret holding a token
 * GitHub (the simulator) does not accept.
 */
export class VictimMonitor {
  readonly rotations: Rotation[] = [];
  readonly problems: string[] = [];
  samples = 0;
  #hash: string | undefined;
  #refreshAt: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #inflight: Promise<void> | undefined;
  readonly #kube: Kube;
  readonly #sim: Simulator;
  readonly #ns: string;
  readonly #secret: string;

  constructor(kube: Kube, sim: Simulator, ns: string, secret: string) {
    this.#kube = kube;
    this.#sim = sim;
    this.#ns = ns;
    this.#secret = secret;
  }

  start(intervalMs = 200): void {
    this.#timer = setInterval(() => {
      this.#inflight ??= this.#sample().finally(() => {
        this.#inflight = undefined;
      });
    }, intervalMs);
  }

  /** Stops sampling; waits for a read in flight (each gives up after 2 s). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#inflight;
  }

  /** A point in time to measure from. */
  mark(): number {
    return Date.now();
  }

  rotationsSince(mark: number): Rotation[] {
    return this.rotations.filter((r) => r.seenAt >= mark);
  }

  /**
   * The worst lateness since `mark`: of each rotation seen, and of the refresh that is due now
   * and has not happened yet.
   */
  maxLatenessSince(mark: number): number {
    const seen = this.rotationsSince(mark).map((r) => r.latenessMs);
    const pending = this.#refreshAt === undefined ? 0 : Date.now() - this.#refreshAt;
    return Math.max(0, pending, ...seen);
  }

  problemsSince(mark: number): string[] {
    return this.problems.filter((p) => Date.parse(p.slice(0, 24)) >= mark);
  }

  /**
   * Waits until the victim rotated at least once after `mark` (so the window held a refresh),
   * then checks that every refresh in it landed within `boundMs` of its refresh time.
   */
  async expectOnTime(mark: number, boundMs: number, timeout: number): Promise<number> {
    await expect
      .poll(() => this.rotationsSince(mark).length, {
        timeout,
        interval: 200,
        message: `the victim did not rotate within ${timeout} ms (lateness now ${this.maxLatenessSince(mark)} ms)`,
      })
      .toBeGreaterThan(0);
    const worst = this.maxLatenessSince(mark);
    expect(worst, `the victim's refresh was ${worst} ms late (bound ${boundMs} ms)`).toBeLessThanOrEqual(
      boundMs,
    );
    expect(this.problemsSince(mark), "the victim's Secret held a token GitHub refuses").toEqual([]);
    return worst;
  }

  async #sample(): Promise<void> {
    const s = await Promise.race([
      this.#kube.core.readNamespacedSecret({ namespace: this.#ns, name: this.#secret }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("read timed out")), 2_000)),
    ]).catch(() => undefined);
    const token = Buffer.from(s?.data?.token ?? "", "base64").toString("utf8");
    if (!s || !token) return;
    this.samples++;
    const now = Date.now();
    const hash = createHash("sha256").update(token).digest("hex");
    const refreshAt = Date.parse(s.metadata?.annotations?.["ghat.dev/refresh-at"] ?? "");
    if (this.#hash !== undefined && hash !== this.#hash && this.#refreshAt !== undefined) {
      this.rotations.push({ seenAt: now, refreshAt: this.#refreshAt, latenessMs: now - this.#refreshAt });
    }
    this.#hash = hash;
    this.#refreshAt = Number.isFinite(refreshAt) ? refreshAt : undefined;
    const check = this.#sim.checkToken(token);
    if (!check.live) this.problems.push(`${new Date(now).toISOString()} the token is ${check.reason}`);
  }
}

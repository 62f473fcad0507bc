import { randomUUID } from "node:crypto";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { type Clock, systemClock } from "../clock.ts";
import type { Logger } from "../log.ts";
import { answerAdmin, liveTokens } from "./admin.ts";
import type { SimContext } from "./context.ts";
import { CallCounter, type Counts } from "./counts.ts";
import { Faults } from "./faults.ts";
import { isGitRequest, serveGit } from "./git.ts";
import { answerGitHub } from "./github.ts";
import { errorBody, messages } from "./messages.ts";
import { type RateLimitConfig, RateLimiter } from "./ratelimit.ts";
import type { Reply } from "./reply.ts";
import type { SimSeed } from "./seed.ts";
import { SimState, type TokenCheck, type TokenScope } from "./state.ts";
import { TokenFactory, type TokenFormat } from "./tokens.ts";

export interface SimulatorOptions {
  /** Apps, installations and repositories to start with. */
  seed?: SimSeed;
  /** Source of time for JWT checks, token expiry, rate-limit windows and latency (default: the system clock). */
  clock?: Clock;
  /** Default 0: any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Token lifetime (GitHub: 3600 s). Shorter lets tests run many refresh cycles. */
  tokenLifetimeSeconds?: number;
  /** Format minted when the request does not force one (default classic). */
  tokenFormat?: TokenFormat;
  /** Enterprise Server: apiUrl ends in /api/v3, no stateless tokens, no rate limits unless `rateLimit` is given. */
  enterprise?: boolean;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: string; key: string };
  /** Per-installation budget for token routes (default 5000 per 3600 s; off in enterprise mode); false: none. */
  rateLimit?: RateLimitConfig | false;
  /** Seconds a JWT's `iat` may lie in the future. Default 0: GitHub's rule, no leeway. */
  iatLeewaySeconds?: number;
  /** Accept the client id as `iss` (default true; false is Enterprise Server before 3.14). */
  clientIdIssuer?: boolean;
  /** Random numbers in [0, 1) for probabilistic faults (default Math.random). */
  random?: () => number;
  /** Serve git over smart HTTP for bare repositories under this directory (`<owner>/<repo>.git`). */
  gitRoot?: string;
  /** Logs one debug line per answered request; never tokens, keys or Authorization headers. */
  log?: Logger;
}

export interface Simulator {
  /** `http(s)://127.0.0.1:PORT`: the web host (git, html_url). */
  url: string;
  /** Where clients point their GitHub API base URL: `url`, or `${url}/api/v3` in enterprise mode. Both are always served. */
  apiUrl: string;
  /** Apps, installations, repositories and issued tokens; change them to change GitHub. */
  state: SimState;
  faults: Faults;
  counts(): Counts;
  resetCounts(): void;
  /** GitHub requests received and not answered yet (waiting out a latency fault, say). */
  inflight(): number;
  /** Tokens GitHub would accept now, with their scope. */
  liveTokens(): TokenScope[];
  /** Would GitHub accept `token` now (for `owner/repo`, when given)? */
  checkToken(token: string, repository?: string): TokenCheck;
  /** Moves the simulator's clock relative to `clock` (negative: GitHub is behind). */
  setClockOffset(ms: number): void;
  /** The simulator's time (clock + offset), ms. */
  now(): number;
  close(): Promise<void>;
}

const apiVersions = new Set(["2022-11-28", "2026-03-10"]);
const maxBodyBytes = 5 << 20;
const maxGitBodyBytes = 256 << 20;

/** Starts the GitHub API simulator (docs/simulator.md) on 127.0.0.1, a free port by default. */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const clock = options.clock ?? systemClock;
  const enterprise = options.enterprise ?? false;
  let offsetMs = 0;
  let urls = { web: "", api: "" };
  const ctx: SimContext = {
    state: new SimState(options.seed ?? {}),
    faults: new Faults(options.random),
    counter: new CallCounter(),
    rateLimiter: new RateLimiter(
      options.rateLimit ?? (enterprise ? false : { limit: 5000, windowSeconds: 3600 }),
    ),
    tokens: new TokenFactory(),
    clock,
    settings: {
      tokenLifetimeSeconds: options.tokenLifetimeSeconds ?? 3600,
      tokenFormat: options.tokenFormat ?? "classic",
      enterprise,
      iatLeewaySeconds: options.iatLeewaySeconds ?? 0,
      clientIdIssuer: options.clientIdIssuer ?? true,
    },
    now: () => clock.now() + offsetMs,
    clockOffset: () => offsetMs,
    setClockOffset: (ms) => {
      offsetMs = ms;
    },
    urls: () => urls,
    log: options.log,
  };

  let inflight = 0;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://sim");
    const git = options.gitRoot !== undefined && isGitRequest(url.pathname);
    readBody(req, git ? maxGitBodyBytes : maxBodyBytes)
      .then(async (body) => {
        if (git && options.gitRoot !== undefined) {
          serveGit(req, res, url, options.gitRoot, { allowed: gitAccess(ctx) }, body);
          return;
        }
        await handle(req, res, url, body.toString("utf8"));
      })
      .catch((err: unknown) => {
        ctx.log?.error({ err }, "Failed to answer a simulator request");
        if (!res.headersSent && !res.destroyed)
          write(res, { kind: "answer", status: 500, body: errorBody(500, messages.serverError) });
      });
  };

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL, body: string): Promise<void> {
    const method = req.method ?? "GET";
    if (url.pathname.startsWith("/_sim/")) {
      write(res, answerAdmin(ctx, { method, path: url.pathname, body }));
      return;
    }
    const path = url.pathname.replace(/^\/api\/v3(?=\/|$)/, "") || "/";
    inflight++;
    const { reply, concerned } = await answerGitHub(ctx, {
      method,
      path,
      query: url.searchParams,
      headers: req.headers,
      body,
    }).finally(() => inflight--);
    const status = reply.kind === "reset" ? 0 : reply.status;
    ctx.counter.record({ ...concerned, status });
    ctx.log?.debug({ method, route: concerned.route, status }, "Answered GitHub request");
    const version = String(req.headers["x-github-api-version"] ?? "");
    write(res, reply, { "x-github-api-version-selected": apiVersions.has(version) ? version : "2022-11-28" });
  }

  function write(res: ServerResponse, reply: Reply, extra: Record<string, string> = {}): void {
    if (res.destroyed) return;
    if (reply.kind === "reset") {
      res.socket?.destroy();
      return;
    }
    const hasBody = reply.body !== undefined && reply.status !== 204 && reply.status !== 304;
    res.writeHead(reply.status, {
      date: new Date(ctx.now()).toUTCString(),
      "x-github-media-type": "github.v3; format=json",
      "x-github-request-id": randomUUID().toUpperCase(),
      ...(hasBody ? { "content-type": "application/json; charset=utf-8" } : {}),
      ...extra,
      ...reply.headers,
    });
    res.end(hasBody ? JSON.stringify(reply.body) : undefined);
  }

  const server: Server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler)
    : createHttpServer(handler);
  server.keepAliveTimeout = 5_000;
  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const reachable = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  const web = `${options.tls ? "https" : "http"}://${reachable.includes(":") ? `[${reachable}]` : reachable}:${port}`;
  urls = { web, api: enterprise ? `${web}/api/v3` : web };
  ctx.log?.info({ url: urls.api, enterprise }, "Started GitHub simulator");

  return {
    url: urls.web,
    apiUrl: urls.api,
    state: ctx.state,
    faults: ctx.faults,
    counts: () => ctx.counter.snapshot(),
    resetCounts: () => ctx.counter.reset(),
    inflight: () => inflight,
    liveTokens: () => liveTokens(ctx),
    checkToken: (token, repository) => ctx.state.checkToken(token, repository, ctx.now()),
    setClockOffset: (ms) => ctx.setClockOffset(ms),
    now: () => ctx.now(),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Git over HTTP: the token must be live, reach the repository, and hold contents (write to push). */
function gitAccess(ctx: SimContext) {
  return (token: string, repository: string, write: boolean): boolean => {
    const check = ctx.state.checkToken(token, repository, ctx.now());
    const level = check.scope?.permissions.contents;
    return check.live && (write ? level === "write" || level === "admin" : level !== undefined);
  };
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.destroy();
        reject(new Error("request body too large"));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { type Clock, systemClock } from "../clock.ts";
import { type Fault, type FaultRule, Faults } from "./faults.ts";
import { isGitRequest, serveGit } from "./git.ts";
import { checkAppJwt } from "./jwtcheck.ts";
import { appObject, installationObject, repositoryObject } from "./objects.ts";
import type { SimSeed } from "./seed.ts";
import { messages, SimState } from "./state.ts";

export interface SimulatorOptions {
  seed?: SimSeed;
  clock?: Clock;
  port?: number;
  host?: string;
  /** Token lifetime (GitHub: 3600 s). Shorter lets tests run many refresh cycles. */
  tokenLifetimeSeconds?: number;
  tokenFormat?: "classic" | "stateless";
  /** Enterprise Server mode: apiUrl ends in /api/v3, no stateless tokens, no rate limits by default. */
  enterprise?: boolean;
  tls?: { cert: string; key: string };
  rateLimit?: { limit: number; windowSeconds: number } | false;
  /** Seconds a JWT's iat may be in the future (GitHub: 0). */
  iatLeewaySeconds?: number;
  /** Serve git over smart HTTP for bare repositories under this directory (`<owner>/<repo>.git`). */
  gitRoot?: string;
}

export interface Simulator {
  url: string;
  apiUrl: string;
  state: SimState;
  faults: Faults;
  counts(): SimState["counts"];
  resetCounts(): void;
  liveTokens(): ReturnType<SimState["checkToken"]>["scope"][];
  checkToken(token: string, repository?: string): ReturnType<SimState["checkToken"]>;
  setClockOffset(ms: number): void;
  /** Current simulator time (ms), with the offset. */
  now(): number;
  close(): Promise<void>;
}

const docs = "https://docs.github.com/rest";

/** Starts the GitHub API simulator (see docs/simulator.md). */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const clock = options.clock ?? systemClock;
  const state = new SimState(options.seed ?? {});
  const faults = new Faults();
  let offsetMs = 0;
  const now = () => clock.now() + offsetMs;
  const rateLimit =
    options.rateLimit === undefined
      ? options.enterprise
        ? false
        : { limit: 5000, windowSeconds: 3600 }
      : options.rateLimit;
  let baseUrl = "";

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      if (size > 64 << 20) req.destroy();
    });
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? "/", "http://sim");
      if (options.gitRoot && isGitRequest(url.pathname)) {
        serveGit(
          req,
          res,
          url,
          options.gitRoot,
          {
            allowed: (token, repository, write) => {
              const check = state.checkToken(token, repository, now());
              const level = check.scope?.permissions.contents;
              return check.live && (write ? level === "write" || level === "admin" : level !== undefined);
            },
          },
          body,
        );
        return;
      }
      const raw = body.toString("utf8");
      handle(req, res, raw).catch((err: unknown) => {
        if (!res.headersSent)
          send(res, 500, { message: `simulator error: ${err instanceof Error ? err.message : String(err)}` });
      });
    });
  };

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, {
      date: new Date(now()).toUTCString(),
      "x-github-media-type": "github.v3; format=json",
      ...(body === undefined ? {} : { "content-type": "application/json; charset=utf-8" }),
      ...headers,
    });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  const error = (status: number, message: string) => ({
    message,
    documentation_url: docs,
    status: String(status),
  });

  async function handle(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const url = new URL(req.url ?? "/", "http://sim");
    if (url.pathname.startsWith("/_sim/")) return admin(req, res, url, raw);
    const web = baseUrl;
    const api = options.enterprise ? `${baseUrl}/api/v3` : baseUrl;
    const path = url.pathname.replace(/^\/api\/v3(?=\/)/, "");
    const method = req.method ?? "GET";
    const route = routeOf(method, path);
    const ids: { appId?: number; installationId?: number } = {};
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      state.record(route?.op ?? "unknown", status, ids.appId, ids.installationId);
      send(res, status, body, headers);
    };
    if (!route) return reply(404, error(404, messages.notFound));

    const applied = faults.take(route.op);
    let lagMs = 0;
    for (const f of applied) {
      if (f.kind === "latency") await new Promise((r) => setTimeout(r, f.ms));
      if (f.kind === "replicationLag") lagMs = f.ms;
    }
    const terminal = applied.find((f) => f.kind !== "latency" && f.kind !== "replicationLag");
    if (terminal) return injectFault(terminal, route.op, req, reply, route.installationId);

    // Token-authenticated routes.
    if (
      route.op === "apps/revoke-installation-access-token" ||
      route.op === "apps/list-repos-accessible-to-installation"
    ) {
      const value = req.headers.authorization?.match(/^(?:token|bearer)\s+(\S+)$/i)?.[1];
      const t = value ? state.tokens.get(value) : undefined;
      if (t) Object.assign(ids, { appId: t.appId, installationId: t.installationId });
      if (!value || !t || state.tokenProblem(value, now()) !== undefined)
        return reply(401, error(401, messages.badCredentials));
      const rl = consumeRateLimit(t.installationId);
      if (rl.exceeded) {
        return reply(
          403,
          error(403, `API rate limit exceeded for installation ID ${t.installationId}.`),
          rl.headers,
        );
      }
      if (route.op === "apps/revoke-installation-access-token") {
        t.revoked = true;
        return reply(204, undefined, rl.headers);
      }
      const inst = state.installations.get(t.installationId);
      const repos = (inst ? state.covered(inst) : []).filter(
        (r) => !t.repositoryIds || t.repositoryIds.includes(r.id),
      );
      const { page, perPage } = paging(url);
      const slice = repos.slice((page - 1) * perPage, page * perPage);
      return reply(
        200,
        {
          total_count: repos.length,
          repository_selection: t.repositoryIds ? "selected" : (inst?.repositorySelection ?? "all"),
          repositories: slice.map((r) => repositoryObject(r, web, api)),
        },
        { ...rl.headers, ...linkHeader(`${api}${path}`, page, perPage, repos.length) },
      );
    }

    // JWT-authenticated routes.
    const jwt = checkAppJwt(
      req.headers.authorization,
      (iss) => state.findApp(iss),
      Math.floor(now() / 1000),
      options.iatLeewaySeconds ?? 0,
    );
    if (!jwt.ok) return reply(jwt.status, error(jwt.status, jwt.message));
    const app = jwt.app;
    ids.appId = app.id;
    const mine = [...state.installations.values()].filter((i) => i.appId === app.id);
    const installationJson = (i: (typeof mine)[number]) => installationObject(i, app, web, api);

    switch (route.op) {
      case "apps/get-authenticated":
        return reply(200, appObject(app, web, api));
      case "apps/list-installations": {
        const { page, perPage } = paging(url);
        const sorted = mine.sort((a, b) => a.id - b.id);
        return reply(
          200,
          sorted.slice((page - 1) * perPage, page * perPage).map(installationJson),
          linkHeader(`${api}${path}`, page, perPage, sorted.length),
        );
      }
      case "apps/get-installation": {
        const inst = mine.find((i) => i.id === route.installationId);
        if (inst) ids.installationId = inst.id;
        return inst ? reply(200, installationJson(inst)) : reply(404, error(404, messages.notFound));
      }
      case "apps/get-org-installation":
      case "apps/get-user-installation": {
        const login = (route.owner ?? "").toLowerCase();
        const inst = mine.find(
          (i) =>
            i.account.login.toLowerCase() === login &&
            (route.op === "apps/get-user-installation" || i.account.type === "Organization"),
        );
        if (inst) ids.installationId = inst.id;
        return inst ? reply(200, installationJson(inst)) : reply(404, error(404, messages.notFound));
      }
      case "apps/get-repo-installation": {
        const repo = state.findRepository(route.owner ?? "", route.repo ?? "");
        const inst = repo && mine.find((i) => state.covered(i).includes(repo));
        if (inst) ids.installationId = inst.id;
        return inst ? reply(200, installationJson(inst)) : reply(404, error(404, messages.notFound));
      }
      case "apps/create-installation-access-token": {
        if (route.installationId !== undefined) ids.installationId = route.installationId;
        const headerFormat = String(req.headers["x-github-stateless-s2s-token"] ?? "").toLowerCase();
        const format =
          options.enterprise || headerFormat === "disabled"
            ? "classic"
            : headerFormat === "enabled"
              ? "stateless"
              : (options.tokenFormat ?? "classic");
        const outcome = state.mint(app, route.installationId ?? 0, raw, now(), {
          lifetimeS: options.tokenLifetimeSeconds ?? 3600,
          format,
          lagMs,
        });
        if (!outcome.ok) return reply(outcome.status, error(outcome.status, outcome.message));
        const t = outcome.token;
        const inst = state.installations.get(t.installationId);
        return reply(201, {
          token: t.token,
          expires_at: new Date(t.expiresAt).toISOString().replace(/\.\d{3}Z$/, "Z"),
          permissions: t.permissions,
          repository_selection: outcome.repositories ? "selected" : (inst?.repositorySelection ?? "all"),
          ...(outcome.repositories
            ? { repositories: outcome.repositories.map((r) => repositoryObject(r, web, api)) }
            : {}),
        });
      }
    }
    return reply(404, error(404, messages.notFound));
  }

  function consumeRateLimit(installationId: number): { exceeded: boolean; headers: Record<string, string> } {
    if (!rateLimit) return { exceeded: false, headers: {} };
    const t = now();
    let rl = state.rateLimits.get(installationId);
    if (!rl || t >= rl.resetAt) {
      rl = { used: 0, resetAt: t + rateLimit.windowSeconds * 1000 };
      state.rateLimits.set(installationId, rl);
    }
    const exceeded = rl.used >= rateLimit.limit;
    if (!exceeded) rl.used++;
    return {
      exceeded,
      headers: {
        "x-ratelimit-limit": String(rateLimit.limit),
        "x-ratelimit-remaining": String(Math.max(0, rateLimit.limit - rl.used)),
        "x-ratelimit-used": String(rl.used),
        "x-ratelimit-reset": String(Math.ceil(rl.resetAt / 1000)),
        "x-ratelimit-resource": "core",
      },
    };
  }

  function injectFault(
    f: Fault,
    op: string,
    req: IncomingMessage,
    reply: (status: number, body: unknown, headers?: Record<string, string>) => void,
    installationId: number | undefined,
  ): void {
    switch (f.kind) {
      case "reset":
        state.record(op, 0, undefined, installationId);
        req.socket.destroy();
        return;
      case "status":
        reply(f.status, error(f.status, f.message ?? (f.status >= 500 ? "Server Error" : "Injected fault")));
        return;
      case "primaryRateLimit": {
        const reset = Math.ceil(now() / 1000) + (f.resetInSeconds ?? 60);
        const message = `API rate limit exceeded for installation ID ${installationId ?? 0}.`;
        reply(f.status ?? 403, error(f.status ?? 403, message), {
          "x-ratelimit-limit": "5000",
          "x-ratelimit-remaining": "0",
          "x-ratelimit-used": "5000",
          "x-ratelimit-reset": String(reset),
          "x-ratelimit-resource": "core",
        });
        return;
      }
      case "secondaryRateLimit": {
        const message =
          "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
        const headers: Record<string, string> =
          f.retryAfterSeconds === undefined ? {} : { "retry-after": String(f.retryAfterSeconds) };
        reply(f.status ?? 403, error(f.status ?? 403, message), headers);
        return;
      }
      default:
        reply(500, error(500, "unexpected fault"));
    }
  }

  function admin(req: IncomingMessage, res: ServerResponse, url: URL, raw: string) {
    const body = (() => {
      try {
        return raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
      } catch {
        return undefined;
      }
    })();
    const ok = (b: unknown) => send(res, 200, b);
    if (body === undefined) return send(res, 400, { message: "body is not JSON" });
    const p = url.pathname;
    const m = req.method;
    if (m === "GET" && p === "/_sim/counts") return ok(state.counts);
    if (m === "POST" && p === "/_sim/counts/reset") {
      state.resetCounts();
      return ok({});
    }
    if (m === "GET" && p === "/_sim/tokens") return ok(sim.liveTokens());
    if (m === "POST" && p === "/_sim/check-token") {
      return ok(
        state.checkToken(
          String(body.token ?? ""),
          typeof body.repository === "string" ? body.repository : undefined,
          now(),
        ),
      );
    }
    if (m === "GET" && p === "/_sim/faults") return ok(faults.list());
    if (m === "POST" && p === "/_sim/faults") {
      faults.add(body as unknown as FaultRule);
      return ok(faults.list());
    }
    if (m === "DELETE" && p === "/_sim/faults") {
      faults.clear();
      return ok([]);
    }
    if (m === "POST" && p === "/_sim/clock") {
      offsetMs = Number(body.offsetMs ?? 0);
      return ok({ offsetMs });
    }
    if (m === "POST" && p === "/_sim/seed") {
      state.load(body);
      return ok({});
    }
    const inst = p.match(/^\/_sim\/installations\/(\d+)\/(suspend|unsuspend|delete)$/);
    if (m === "POST" && inst) {
      const id = Number(inst[1]);
      const i = state.installations.get(id);
      if (!i) return send(res, 404, { message: "no such installation" });
      if (inst[2] === "delete") state.installations.delete(id);
      else i.suspendedAt = inst[2] === "suspend" ? new Date(now()).toISOString() : null;
      return ok({});
    }
    send(res, 404, { message: "unknown admin route" });
  }

  const server: Server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler)
    : createHttpServer(handler);
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = (options.host ?? "127.0.0.1") === "0.0.0.0" ? "127.0.0.1" : (options.host ?? "127.0.0.1");
  baseUrl = `${options.tls ? "https" : "http"}://${host === "localhost" ? "localhost" : host}:${address.port}`;

  const sim: Simulator = {
    url: baseUrl,
    apiUrl: options.enterprise ? `${baseUrl}/api/v3` : baseUrl,
    state,
    faults,
    counts: () => state.counts,
    resetCounts: () => state.resetCounts(),
    liveTokens: () =>
      [...state.tokens.values()]
        .filter((t) => state.tokenProblem(t.token, now()) === undefined)
        .map((t) => state.checkToken(t.token, undefined, now()).scope),
    checkToken: (token, repository) => state.checkToken(token, repository, now()),
    setClockOffset: (ms) => {
      offsetMs = ms;
    },
    now,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return sim;
}

interface Route {
  op: string;
  installationId?: number;
  owner?: string;
  repo?: string;
}

const routes: [string, RegExp, (m: RegExpMatchArray) => Route][] = [
  ["GET", /^\/app$/, () => ({ op: "apps/get-authenticated" })],
  ["GET", /^\/app\/installations$/, () => ({ op: "apps/list-installations" })],
  [
    "GET",
    /^\/app\/installations\/(\d+)$/,
    (m) => ({ op: "apps/get-installation", installationId: Number(m[1]) }),
  ],
  [
    "POST",
    /^\/app\/installations\/(\d+)\/access_tokens$/,
    (m) => ({ op: "apps/create-installation-access-token", installationId: Number(m[1]) }),
  ],
  [
    "GET",
    /^\/orgs\/([^/]+)\/installation$/,
    (m) => ({ op: "apps/get-org-installation", owner: decode(m[1]) }),
  ],
  [
    "GET",
    /^\/users\/([^/]+)\/installation$/,
    (m) => ({ op: "apps/get-user-installation", owner: decode(m[1]) }),
  ],
  [
    "GET",
    /^\/repos\/([^/]+)\/([^/]+)\/installation$/,
    (m) => ({ op: "apps/get-repo-installation", owner: decode(m[1]), repo: decode(m[2]) }),
  ],
  ["DELETE", /^\/installation\/token$/, () => ({ op: "apps/revoke-installation-access-token" })],
  ["GET", /^\/installation\/repositories$/, () => ({ op: "apps/list-repos-accessible-to-installation" })],
];

/** Maps a request to GitHub's operation id. */
export function routeOf(method: string, path: string): Route | undefined {
  const p = path.replace(/\/+$/, "") || "/";
  for (const [verb, re, build] of routes) {
    const m = method === verb ? p.match(re) : null;
    if (m) return build(m);
  }
  return undefined;
}

function decode(s: string | undefined): string {
  return decodeURIComponent(s ?? "");
}

function paging(url: URL): { page: number; perPage: number } {
  const perPage = Math.min(100, Math.max(1, Number(url.searchParams.get("per_page") ?? 30) || 30));
  const page = Math.max(1, Number(url.searchParams.get("page") ?? 1) || 1);
  return { page, perPage };
}

/** GitHub's Link header, only when there is more than one page. */
function linkHeader(base: string, page: number, perPage: number, total: number): Record<string, string> {
  const last = Math.max(1, Math.ceil(total / perPage));
  if (last <= 1) return {};
  const at = (n: number) => `<${base}?per_page=${perPage}&page=${n}>`;
  const links: string[] = [];
  if (page > 1) links.push(`${at(page - 1)}; rel="prev"`);
  if (page < last) links.push(`${at(page + 1)}; rel="next"`);
  links.push(`${at(last)}; rel="last"`);
  if (page > 1) links.push(`${at(1)}; rel="first"`);
  return { link: links.join(", ") };
}

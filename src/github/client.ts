import type { Dispatcher } from "undici";
import { fetch as undiciFetch } from "undici";
import type { Clock } from "../clock.ts";
import { GhatError } from "../core/errors.ts";
import { classifyGitHubError, classifyNetworkError, githubMessage, isTimeClaimError } from "./classify.ts";
import { createDispatcher } from "./dispatcher.ts";
import { signAppJwt } from "./jwt.ts";
import { nextPagePath } from "./link.ts";
import {
  appSchema,
  installationListSchema,
  installationSchema,
  installationTokenSchema,
  parseAnswer,
} from "./schemas.ts";
import type {
  AppCredentials,
  GitHubAppInfo,
  Installation,
  InstallationRef,
  MintedToken,
  MintRequest,
  RateLimit,
  RequestInfo,
} from "./types.ts";
import { defaultUserAgent } from "./useragent.ts";

export const defaultBaseUrl = "https://api.github.com";
/** Sent explicitly: GitHub's default today, and a newer one changes answers (e.g. 204 → 202). */
export const defaultApiVersion = "2022-11-28";
export const defaultTimeoutMs = 10_000;

/** The part of `fetch` the client uses; undici's `fetch` by default, anything alike in tests. */
export type Fetch = (url: string, init: FetchInit) => Promise<FetchResponse>;

export interface FetchInit {
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal: AbortSignal;
  dispatcher?: Dispatcher;
}

export interface FetchResponse {
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}

export interface GitHubClientOptions {
  /** `https://api.github.com` by default; Enterprise Server: `https://HOST/api/v3`. Trailing slashes are fine. */
  baseUrl?: string | undefined;
  /** PEM certificates trusted in addition to Node's default CAs. */
  caBundle?: string | undefined;
  /** Proxy URL (an https API is reached through a CONNECT tunnel). */
  proxy?: string | undefined;
  clock: Clock;
  /** `X-GitHub-Api-Version`, always sent; default 2022-11-28. */
  apiVersion?: string | undefined;
  /** Default `ghat/<version>`. */
  userAgent?: string | undefined;
  /** Per request, body included; default 10 s. */
  timeoutMs?: number | undefined;
  /** Wait after a secondary rate limit without retry-after; default 60 s, as GitHub asks. */
  secondaryWaitMs?: number | undefined;
  /** When set, sends `X-GitHub-Stateless-S2S-Token` to force GitHub's new (enabled) or classic token format. */
  tokenFormat?: "enabled" | "disabled" | undefined;
  /** Called after every HTTP exchange, failed ones included (status 0 when nothing came back). */
  onRequest?: ((info: RequestInfo) => void) | undefined;
  /** Called when an answer about a known installation carries `x-ratelimit-*` headers. */
  onRateLimit?: ((installationId: number, rateLimit: RateLimit) => void) | undefined;
  /** For tests; default undici's `fetch` with the dispatcher built from caBundle and proxy. */
  fetch?: Fetch | undefined;
}

/**
 * The only code that talks to GitHub. Every failure is a GhatError (see classify.ts); nothing
 * is retried here except one re-signed JWT after a clock-skew error: the controller's queue
 * decides when to try again, from `retryable` and `retryAt`.
 */
export interface GitHubClient {
  /**
   * Mints an installation token (`POST /app/installations/{id}/access_tokens`). The request's
   * arrays are copied, never mutated; empty fields are left out of the body.
   *
   * Where the token is used: for a few seconds after minting, GitHub may answer 401 (token
   * not replicated yet) or 403 (scoped permissions not replicated yet) on token routes.
   * Consumers of a fresh token should retry those briefly rather than treat them as final.
   */
  mintToken(app: AppCredentials, installationId: number, request?: MintRequest): Promise<MintedToken>;
  /**
   * Revokes a token (`DELETE /installation/token`, authenticated by the token itself). 204 is
   * success, and so is 401 `Bad credentials`: the token is already expired or revoked.
   * A 401 can also mean "not replicated yet" within seconds of minting, so revoke tokens that
   * are at least a few seconds old (ghat revokes superseded tokens after a grace period).
   * `installationId`, when known, attributes the answer's rate-limit headers.
   */
  revokeToken(token: string, installationId?: number): Promise<void>;
  /** `GET /app`: checks the App id / client id and key together. */
  getApp(app: AppCredentials): Promise<GitHubAppInfo>;
  /** `GET /app/installations/{id}`. */
  getInstallation(app: AppCredentials, installationId: number): Promise<Installation>;
  /** `GET /users/{owner}/installation`: works for organizations too. */
  findInstallationByOwner(app: AppCredentials, owner: string): Promise<Installation>;
  /** `GET /repos/{owner}/{repo}/installation` for `"owner/repo"`. */
  findInstallationByRepository(app: AppCredentials, repository: string): Promise<Installation>;
  /** `GET /app/installations`, every page (follows `Link: rel="next"`). */
  listInstallations(app: AppCredentials): Promise<Installation[]>;
  /** GitHub's clock minus ours, learned from a time-claim error's `Date` header (0 until then). */
  clockOffsetMs(): number;
  /** Closes the connections of a CA-bundle or proxy dispatcher. */
  close(): Promise<void>;
}

interface Call {
  route: string;
  method: "GET" | "POST" | "DELETE";
  path: string;
  body?: unknown;
  installationId?: number | undefined;
  installation?: InstallationRef | undefined;
}

interface Answer {
  status: number;
  headers: { get(name: string): string | null };
  text: string;
}

export function createGitHubClient(options: GitHubClientOptions): GitHubClient {
  const { clock } = options;
  const base = normaliseBaseUrl(options.baseUrl ?? defaultBaseUrl);
  const dispatcher = createDispatcher({ caBundle: options.caBundle, proxy: options.proxy });
  const fetchFn: Fetch = options.fetch ?? ((url, init) => undiciFetch(url, init));
  const apiVersion = options.apiVersion ?? defaultApiVersion;
  const userAgent = options.userAgent ?? defaultUserAgent();
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  let offsetMs = 0;

  async function send(call: Call, authorization: string): Promise<Answer> {
    const url = `${base}${call.path}`;
    const headers: Record<string, string> = {
      accept: "application/vnd.github+json",
      "x-github-api-version": apiVersion,
      "user-agent": userAgent,
      authorization,
    };
    if (options.tokenFormat) headers["x-github-stateless-s2s-token"] = options.tokenFormat;
    const init: FetchInit = { method: call.method, headers, signal: AbortSignal.timeout(timeoutMs) };
    if (call.body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(call.body);
    }
    if (dispatcher) init.dispatcher = dispatcher;

    const started = clock.now();
    let status = 0;
    let answer: Answer;
    try {
      const res = await fetchFn(url, init);
      // The body is read under the same timeout signal.
      answer = { status: res.status, headers: res.headers, text: await res.text() };
      status = res.status;
    } catch (err) {
      throw classifyNetworkError(err, { ...call, url, timeoutMs });
    } finally {
      options.onRequest?.({
        route: call.route,
        method: call.method,
        status,
        durationMs: clock.now() - started,
      });
    }
    reportRateLimit(answer.headers, call.installationId);
    return answer;
  }

  function reportRateLimit(headers: Answer["headers"], installationId: number | undefined): void {
    if (installationId === undefined || !options.onRateLimit) return;
    const num = (name: string) => {
      const v = headers.get(name);
      return v === null || v.trim() === "" ? Number.NaN : Number(v);
    };
    const rateLimit = {
      limit: num("x-ratelimit-limit"),
      remaining: num("x-ratelimit-remaining"),
      used: num("x-ratelimit-used"),
      reset: num("x-ratelimit-reset"),
    };
    if (!Number.isFinite(rateLimit.limit) || !Number.isFinite(rateLimit.remaining)) return;
    options.onRateLimit(installationId, {
      ...rateLimit,
      used: Number.isFinite(rateLimit.used) ? rateLimit.used : rateLimit.limit - rateLimit.remaining,
      reset: Number.isFinite(rateLimit.reset) ? rateLimit.reset : 0,
    });
  }

  function fail(answer: Answer, call: Call, issuer?: string | number): GhatError {
    return classifyGitHubError(answer.status, answer.headers, answer.text, {
      route: call.route,
      method: call.method,
      path: call.path,
      now: clock.now(),
      issuer,
      installation: call.installation,
      secondaryWaitMs: options.secondaryWaitMs,
    });
  }

  /**
   * JWTs are reused for a minute (they are valid for nine): an RS256 signature costs about a
   * millisecond of CPU, which adds up in a burst of mints. Any failure drops the cached one.
   */
  const jwts = new WeakMap<
    AppCredentials["key"],
    { issuer: string | number; offsetMs: number; jwt: string; until: number }
  >();
  async function appJwt(app: AppCredentials, issuer: string | number): Promise<string> {
    const now = clock.now();
    const cached = jwts.get(app.key);
    if (
      cached &&
      cached.issuer === issuer &&
      cached.offsetMs === offsetMs &&
      now < cached.until &&
      now >= cached.until - 60_000
    )
      return cached.jwt;
    const jwt = await signAppJwt({ key: app.key, issuer, nowMs: now, offsetMs });
    jwts.set(app.key, { issuer, offsetMs, jwt, until: now + 60_000 });
    return jwt;
  }

  /** A request authenticated as the App; re-signs once on GitHub's clock after a time-claim 401. */
  async function asApp(app: AppCredentials, call: Call): Promise<Answer> {
    const issuer = issuerOf(app);
    for (let attempt = 0; ; attempt++) {
      const jwt = await appJwt(app, issuer);
      const answer = await send(call, `Bearer ${jwt}`);
      if (answer.status >= 200 && answer.status < 300) return answer;
      jwts.delete(app.key);
      if (attempt === 0 && isTimeClaimError(answer.status, githubMessage(answer.text).message)) {
        const githubNow = Date.parse(answer.headers.get("date") ?? "");
        if (Number.isFinite(githubNow)) {
          // Remembered for every later JWT of this client, not just this retry.
          // @see https://github.com/octokit/auth-app.js/issues/146
          offsetMs = githubNow - clock.now();
          continue;
        }
      }
      throw fail(answer, call, issuer);
    }
  }

  const installationPath = (id: number) => `/app/installations/${positiveId(id, "installation id")}`;

  return {
    async mintToken(app, installationId, request = {}) {
      const path = `${installationPath(installationId)}/access_tokens`;
      const body: {
        permissions?: Record<string, string>;
        repositories?: string[];
        repository_ids?: number[];
      } = {};
      if (request.permissions && Object.keys(request.permissions).length > 0) {
        body.permissions = { ...request.permissions };
      }
      if (request.repositories && request.repositories.length > 0)
        body.repositories = [...request.repositories];
      if (request.repositoryIds && request.repositoryIds.length > 0) {
        body.repository_ids = [...request.repositoryIds];
      }
      const answer = await asApp(app, {
        route: "apps/create-installation-access-token",
        method: "POST",
        path,
        ...(Object.keys(body).length > 0 ? { body } : {}),
        installationId,
        installation: { id: installationId },
      });
      const t = parseAnswer(installationTokenSchema, answer.text, `POST ${path}`);
      const named = body.repositories !== undefined || body.repository_ids !== undefined;
      return {
        token: t.token,
        expiresAt: localExpiry(Date.parse(t.expires_at), answer.headers.get("date"), clock.now()),
        permissions: t.permissions ?? {},
        repositorySelection: t.repository_selection ?? (named ? "selected" : "all"),
        ...(t.repositories
          ? { repositories: t.repositories.map((r) => ({ id: r.id, name: r.name, fullName: r.full_name })) }
          : {}),
      };
    },

    async revokeToken(token, installationId) {
      const value = typeof token === "string" ? token.trim() : "";
      if (value === "" || /[\s\0]/.test(value)) {
        throw new GhatError("InvalidSpec", "the token to revoke is empty or contains whitespace");
      }
      const call: Call = {
        route: "apps/revoke-installation-access-token",
        method: "DELETE",
        path: "/installation/token",
        installationId,
      };
      const answer = await send(call, `token ${value}`);
      if ((answer.status >= 200 && answer.status < 300) || answer.status === 401) return;
      throw fail(answer, call);
    },

    async getApp(app) {
      const answer = await asApp(app, { route: "apps/get-authenticated", method: "GET", path: "/app" });
      return parseAnswer(appSchema, answer.text, "GET /app");
    },

    async getInstallation(app, installationId) {
      const path = installationPath(installationId);
      const answer = await asApp(app, {
        route: "apps/get-installation",
        method: "GET",
        path,
        installationId,
        installation: { id: installationId },
      });
      return parseAnswer(installationSchema, answer.text, `GET ${path}`);
    },

    async findInstallationByOwner(app, owner) {
      const login = owner.trim();
      if (login === "" || login.includes("/")) {
        throw new GhatError("InvalidSpec", `"${login.slice(0, 100)}" is not a user or organization login`);
      }
      const path = `/users/${encodeURIComponent(login)}/installation`;
      const answer = await asApp(app, {
        route: "apps/get-user-installation",
        method: "GET",
        path,
        installation: { owner: login },
      });
      return parseAnswer(installationSchema, answer.text, `GET ${path}`);
    },

    async findInstallationByRepository(app, repository) {
      const parts = repository.trim().split("/");
      const [owner, repo] = parts;
      if (parts.length !== 2 || !owner || !repo) {
        throw new GhatError("InvalidSpec", `"${repository.slice(0, 200)}" is not an owner/repo name`);
      }
      // A renamed repository answers 301 to its new location; fetch follows it (same host).
      const path = `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}/installation`;
      const answer = await asApp(app, {
        route: "apps/get-repo-installation",
        method: "GET",
        path,
        installation: { repository: `${owner}/${repo}` },
      });
      return parseAnswer(installationSchema, answer.text, `GET ${path}`);
    },

    async listInstallations(app) {
      const all: Installation[] = [];
      const seen = new Set<string>();
      let path: string | undefined = "/app/installations?per_page=100";
      while (path !== undefined) {
        if (seen.has(path)) {
          throw new GhatError("GitHubUnavailable", "GitHub's Link header sent pagination in a loop");
        }
        seen.add(path);
        const answer = await asApp(app, { route: "apps/list-installations", method: "GET", path });
        all.push(...parseAnswer(installationListSchema, answer.text, "GET /app/installations"));
        path = nextPagePath(answer.headers.get("link"), base);
      }
      return all;
    },

    clockOffsetMs: () => offsetMs,

    async close() {
      await dispatcher?.close();
    },
  };
}

/** The JWT's `iss`: the numeric App id when known (Enterprise Server < 3.14 takes only that), else the client id. */
/**
 * expires_at is on GitHub's clock. When GitHub's clock is ahead of ours (its Date header),
 * the token dies earlier on ours: move the expiry back by the difference, so refresh and
 * the minimum remaining lifetime hold under clock skew. When GitHub is behind, keep its
 * value (refreshing a little early is harmless). Whole seconds, like GitHub's.
 */
export function localExpiry(expiresAt: number, dateHeader: string | null, nowMs: number): number {
  const githubNow = Date.parse(dateHeader ?? "");
  if (!Number.isFinite(githubNow)) return expiresAt;
  // The Date header is truncated to the second: GitHub's true time is up to 1 s later.
  const aheadMs = githubNow + 1_000 - nowMs;
  return aheadMs > 1_000 ? Math.floor((expiresAt - aheadMs) / 1_000) * 1_000 : expiresAt;
}

function issuerOf(app: AppCredentials): string | number {
  if (app.appId !== undefined) return positiveId(app.appId, "App id");
  const clientId = app.clientId?.trim();
  if (clientId) return clientId;
  throw new GhatError("InvalidSpec", "the App has neither an App id nor a client id");
}

function positiveId(id: number, what: string): number {
  if (!Number.isSafeInteger(id) || id <= 0) {
    throw new GhatError("InvalidSpec", `${what} ${String(id).slice(0, 30)} is not a positive integer`);
  }
  return id;
}

/** `https://HOST/api/v3/` → `https://HOST/api/v3`; refuses what cannot be an API base URL. */
function normaliseBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new GhatError("InvalidSpec", "the GitHub API URL is not a URL (expected https://HOST/api/v3)");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new GhatError("InvalidSpec", `the GitHub API URL must be http(s), not ${url.protocol}`);
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new GhatError(
      "InvalidSpec",
      "the GitHub API URL must not carry credentials, a query or a fragment (expected https://HOST/api/v3)",
    );
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

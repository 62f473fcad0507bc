import type { Readable } from "node:stream";
import type { Clock } from "../clock.ts";
import { GhatError } from "../core/errors.ts";
import {
  classifyGitHubError,
  classifyNetworkError,
  githubMessage,
  hostOf,
  isTimeClaimError,
} from "./classify.ts";
import { signAppJwt } from "./jwt.ts";
import { nextPagePath } from "./link.ts";
import {
  appSchema,
  installationListSchema,
  installationSchema,
  installationTokenSchema,
  isInstallationToken,
  parseAnswer,
} from "./schemas.ts";
import { createTransport } from "./transport.ts";
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
/**
 * The largest answer read, in bytes: GitHub's largest answer ghat asks for (a page of 100
 * installations, a token naming 500 repositories) is a few hundred KiB. Reading stops there.
 */
export const maxResponseBytes = 1024 * 1024;
/**
 * The accepted `expires_at` window after the answer's `Date` header. GitHub's tokens live one
 * hour; a value outside would make ghat mint in a loop (past or seconds ahead) or overflow a
 * timer (year 9999). The lower bound is an option (a simulator with short-lived tokens).
 */
export const minTokenLifetimeMs = 60_000;
export const maxTokenLifetimeMs = 24 * 3_600_000;
/** The least `minTokenLifetimeMs` option accepted: a token must outlive its own answer. */
export const leastTokenLifetimeMs = 1_000;

/** The part of `fetch` the client uses: node:https by default (transport.ts), anything alike in tests. */
export type Fetch = (url: string, init: FetchInit) => Promise<FetchResponse>;

export interface FetchInit {
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal: AbortSignal;
  /** Always "manual": a redirect is an answer to classify, never followed (see classify.ts). */
  redirect: "manual";
}

export interface FetchResponse {
  status: number;
  headers: { get(name: string): string | null };
  /**
   * The body as a stream (node's response, or a `Response.body`; null when there is none):
   * read up to `maxResponseBytes`, then dropped. Fakes without it are read with `text()`.
   */
  body?: Readable | ReadableStream<Uint8Array> | null;
  text(): Promise<string>;
}

export interface GitHubClientOptions {
  /**
   * How long a signed App JWT is reused (default 1 minute, at most 5 of its 9): with a
   * keyless signer, this is how often the KMS or HSM is asked per App.
   */
  jwtReuseMs?: number | undefined;
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
  /**
   * Shortest accepted lifetime of a minted token (`expires_at` after the answer's `Date`);
   * default 1 minute, at least 1 s. Lower it only for a simulator minting short-lived tokens.
   */
  minTokenLifetimeMs?: number | undefined;
  /** Called after every HTTP exchange, failed ones included (status 0 when nothing came back). */
  onRequest?: ((info: RequestInfo) => void) | undefined;
  /** Called when an answer about a known installation carries `x-ratelimit-*` headers. */
  onRateLimit?: ((installationId: number, rateLimit: RateLimit) => void) | undefined;
  /** For tests; default the transport built from caBundle and proxy (transport.ts). */
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
  /** Closes the connections of a CA-bundle or proxy transport. */
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
  const transport = createTransport({ caBundle: options.caBundle, proxy: options.proxy });
  const fetchFn: Fetch = options.fetch ?? transport.fetch;
  const apiVersion = options.apiVersion ?? defaultApiVersion;
  const userAgent = options.userAgent ?? defaultUserAgent();
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const lifetimeFloorMs = Math.min(
    maxTokenLifetimeMs,
    Math.max(leastTokenLifetimeMs, options.minTokenLifetimeMs ?? minTokenLifetimeMs),
  );
  let offsetMs = 0;
  const jwtReuseMs = Math.min(5 * 60_000, Math.max(0, options.jwtReuseMs ?? 60_000));

  async function send(call: Call, authorization: string): Promise<Answer> {
    const url = `${base}${call.path}`;
    const headers: Record<string, string> = {
      accept: "application/vnd.github+json",
      "x-github-api-version": apiVersion,
      "user-agent": userAgent,
      authorization,
    };
    if (options.tokenFormat) headers["x-github-stateless-s2s-token"] = options.tokenFormat;
    const init: FetchInit = {
      method: call.method,
      headers,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: "manual",
    };
    if (call.body !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(call.body);
    }

    const started = clock.now();
    let status = 0;
    let answer: Answer;
    let text: string | undefined;
    try {
      const res = await fetchFn(url, init);
      status = res.status;
      // The body is read under the same timeout signal.
      text = await readCapped(res, maxResponseBytes);
      answer = { status: res.status, headers: res.headers, text: text ?? "" };
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
    if (text === undefined) {
      throw new GhatError(
        "InvalidResponse",
        `${hostOf(base)} answered more than 1 MiB; the answer was discarded (${call.method} ${call.path})`,
        { status },
      );
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
      baseUrl: base,
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
      now >= cached.until - jwtReuseMs
    )
      return cached.jwt;
    const jwt = await signAppJwt({ key: app.key, issuer, nowMs: now, offsetMs });
    jwts.set(app.key, { issuer, offsetMs, jwt, until: now + jwtReuseMs });
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
      if (!isInstallationToken(t.token)) {
        throw new GhatError(
          "InvalidResponse",
          `GitHub answered a token that does not match GitHub's token format; it was discarded (POST ${path})`,
        );
      }
      const expiresAt = acceptedExpiry(
        t.expires_at,
        answer.headers.get("date"),
        clock.now(),
        lifetimeFloorMs,
      );
      const named = body.repositories !== undefined || body.repository_ids !== undefined;
      return {
        token: t.token,
        expiresAt: localExpiry(expiresAt, answer.headers.get("date"), clock.now()),
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
      // A renamed or transferred repository answers 301: refused, never followed (classify.ts).
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
      await transport.close();
    },
  };
}

/**
 * Reads a body up to `limit` bytes; undefined when it is longer (the rest is not read: the
 * stream is cancelled, which drops the connection). A declared `content-length` over the
 * limit is refused before reading.
 */
export async function readCapped(res: FetchResponse, limit: number): Promise<string | undefined> {
  const stream = res.body;
  if (stream === undefined) {
    const text = await res.text();
    return Buffer.byteLength(text) > limit ? undefined : text;
  }
  if (stream === null) return "";
  const declared = Number(res.headers.get("content-length") ?? "");
  const over = Number.isFinite(declared) && declared > limit;
  if (!("getReader" in stream)) {
    // node's response: destroyed past the limit (the connection is dropped, not drained).
    if (over) return void stream.destroy();
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of stream) {
      total += (chunk as Buffer).length;
      if (total > limit) return void stream.destroy();
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks, total).toString("utf8");
  }
  const reader = stream.getReader();
  const discard = async () => {
    await reader.cancel().catch(() => undefined);
    return undefined;
  };
  if (over) return discard();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) return discard();
    chunks.push(value);
  }
  return Buffer.concat(chunks, total).toString("utf8");
}

/**
 * A minted token's `expires_at` in epoch ms, accepted only between `minMs` (default 1 minute)
 * and 24 hours after the answer's `Date` header (this machine's clock when there is none or it
 * is unreadable).
 */
export function acceptedExpiry(
  expiresAt: string,
  dateHeader: string | null,
  nowMs: number,
  minMs: number = minTokenLifetimeMs,
): number {
  const at = Date.parse(expiresAt);
  const githubNow = Date.parse(dateHeader ?? "");
  const reference = Number.isFinite(githubNow) ? githubNow : nowMs;
  const ahead = at - reference;
  if (!Number.isFinite(at) || !(ahead >= minMs && ahead <= maxTokenLifetimeMs)) {
    const after = Number.isFinite(githubNow) ? "its Date header" : "this machine's clock (no Date header)";
    throw new GhatError(
      "InvalidResponse",
      `GitHub answered expires_at ${expiresAt.slice(0, 40)}, outside ${duration(minMs)}–${duration(maxTokenLifetimeMs)} after ${after} (${new Date(reference).toISOString()})`,
    );
  }
  return at;
}

/** `60000` → "1m", `86400000` → "24h", `1500` → "1.5s". */
function duration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

/**
 * expires_at is on GitHub's clock; ghat schedules on its own. Translate it by the skew the
 * answer's Date header shows: when GitHub is ahead, the token dies earlier on our clock;
 * when it is behind, later (taken at face value, a token from a server 5 minutes behind
 * would look expired on arrival and be minted again in a loop). The Date header is
 * truncated to the second, so the translation errs a second early. acceptedExpiry has
 * already bounded expires_at to 24 h after that header. Whole seconds, like GitHub's.
 */
export function localExpiry(expiresAt: number, dateHeader: string | null, nowMs: number): number {
  const githubNow = Date.parse(dateHeader ?? "");
  if (!Number.isFinite(githubNow)) return expiresAt;
  // GitHub's true time is up to 1 s after its Date header.
  const aheadMs = githubNow + 1_000 - nowMs;
  return Math.abs(aheadMs) > 1_000 ? Math.floor((expiresAt - aheadMs) / 1_000) * 1_000 : expiresAt;
}

/** The JWT's `iss`: the numeric App id when known (Enterprise Server < 3.14 takes only that), else the client id. */
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

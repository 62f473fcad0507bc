import type { KeyObject } from "node:crypto";
import { rootCertificates } from "node:tls";
import { Agent, type Dispatcher, ProxyAgent, fetch as undiciFetch } from "undici";
import { z } from "zod";
import type { Clock } from "../clock.ts";
import { GhatError } from "../core/errors.ts";
import { classifyGitHubError, type ErrorContext, isClockError, networkError } from "./errors.ts";
import { signAppJwt } from "./jwt.ts";

/** Who the App is: its issuer (numeric App id preferred: Enterprise Server < 3.14 needs it) and key. */
export interface AppCredentials {
  appId?: number | undefined;
  clientId?: string | undefined;
  key: KeyObject;
}

export interface RateLimit {
  limit: number;
  remaining: number;
  used: number;
  /** Epoch seconds. */
  reset: number;
}

export interface GitHubClientOptions {
  baseUrl?: string;
  caBundle?: string | undefined;
  proxy?: string | undefined;
  clock: Clock;
  apiVersion?: string;
  userAgent?: string;
  timeoutMs?: number;
  /** When set, sends X-GitHub-Stateless-S2S-Token (force GitHub's new or classic token format). */
  tokenFormat?: "enabled" | "disabled" | undefined;
  onRequest?: (info: { route: string; method: string; status: number; durationMs: number }) => void;
  onRateLimit?: (installationId: number, rateLimit: RateLimit) => void;
  /** For tests; defaults to undici's fetch with the configured dispatcher. */
  fetch?: typeof undiciFetch;
}

export interface Installation {
  id: number;
  appId: number;
  account: { login: string; type: string };
  repositorySelection: string;
  permissions: Record<string, string>;
  suspendedAt: string | null;
}

export interface MintRequest {
  permissions?: Record<string, string> | undefined;
  repositories?: readonly string[] | undefined;
  repositoryIds?: readonly number[] | undefined;
}

export interface MintedToken {
  token: string;
  /** Epoch ms, from the server's expires_at. */
  expiresAt: number;
  permissions: Record<string, string>;
  repositorySelection: string;
  repositories?: { id: number; name: string; fullName: string }[];
}

const installationSchema = z.object({
  id: z.number(),
  app_id: z.number(),
  account: z.object({ login: z.string(), type: z.string().default("Organization") }).nullable(),
  repository_selection: z.string(),
  permissions: z.record(z.string(), z.string()),
  suspended_at: z.string().nullable().optional(),
});

const tokenSchema = z.object({
  token: z.string().min(1),
  expires_at: z.string(),
  permissions: z.record(z.string(), z.string()).optional(),
  repository_selection: z.string().optional(),
  repositories: z.array(z.object({ id: z.number(), name: z.string(), full_name: z.string() })).optional(),
});

const appSchema = z.object({ id: z.number(), slug: z.string().optional(), name: z.string().optional() });

/**
 * ghat's GitHub client: JWTs on jose, HTTP on undici (CA bundle, proxy), an explicit API
 * version, clock-skew correction that is remembered, and every error classified.
 * See docs/adr/0001-own-github-client.md for why not @octokit/auth-app.
 */
export class GitHubClient {
  readonly #o: GitHubClientOptions;
  readonly #base: string;
  readonly #fetch: typeof undiciFetch;
  readonly #dispatcher: Dispatcher | undefined;
  #offsetMs = 0;

  constructor(options: GitHubClientOptions) {
    this.#o = options;
    this.#base = (options.baseUrl ?? "https://api.github.com").replace(/\/+$/, "");
    if (options.proxy) {
      this.#dispatcher = new ProxyAgent({
        uri: options.proxy,
        ...(options.caBundle ? { requestTls: { ca: [...rootCertificates, options.caBundle] } } : {}),
      });
    } else if (options.caBundle) {
      this.#dispatcher = new Agent({ connect: { ca: [...rootCertificates, options.caBundle] } });
    }
    this.#fetch = options.fetch ?? undiciFetch;
  }

  /** GitHub's clock minus ours, learned from a time-claim error's Date header. */
  clockOffsetMs(): number {
    return this.#offsetMs;
  }

  async getApp(app: AppCredentials): Promise<{ id: number; slug: string | undefined }> {
    const body = await this.#jwtRequest(app, "apps/get-authenticated", "GET", "/app");
    const parsed = parse(appSchema, body, "GET /app");
    return { id: parsed.id, slug: parsed.slug };
  }

  async getInstallation(app: AppCredentials, id: number): Promise<Installation> {
    const body = await this.#jwtRequest(
      app,
      "apps/get-installation",
      "GET",
      `/app/installations/${id}`,
      undefined,
      id,
    );
    return toInstallation(parse(installationSchema, body, "GET installation"));
  }

  /** By organisation or user login (`/users/{login}/installation` works for both). */
  async findInstallationByOwner(app: AppCredentials, owner: string): Promise<Installation> {
    const path = `/users/${encodeURIComponent(owner)}/installation`;
    const body = await this.#jwtRequest(app, "apps/get-user-installation", "GET", path);
    return toInstallation(parse(installationSchema, body, `GET ${path}`));
  }

  async findInstallationByRepository(app: AppCredentials, fullName: string): Promise<Installation> {
    const [owner = "", repo = ""] = fullName.split("/");
    const path = `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}/installation`;
    const body = await this.#jwtRequest(app, "apps/get-repo-installation", "GET", path);
    return toInstallation(parse(installationSchema, body, `GET ${path}`));
  }

  async listInstallations(app: AppCredentials): Promise<Installation[]> {
    const out: Installation[] = [];
    let path: string | undefined = "/app/installations?per_page=100";
    while (path) {
      const { body, headers } = await this.#jwtRequestWithHeaders(
        app,
        "apps/list-installations",
        "GET",
        path,
      );
      out.push(...parse(z.array(installationSchema), body, "GET /app/installations").map(toInstallation));
      path = nextLink(headers.get("link"), this.#base);
    }
    return out;
  }

  /**
   * Mints an installation token. The caller's arrays are never mutated. Note: GitHub may
   * answer 401/403 on the new token for a few seconds (replication); consumers retry.
   */
  async mintToken(
    app: AppCredentials,
    installationId: number,
    request: MintRequest = {},
  ): Promise<MintedToken> {
    const body: Record<string, unknown> = {};
    if (request.permissions && Object.keys(request.permissions).length > 0)
      body.permissions = { ...request.permissions };
    if (request.repositories && request.repositories.length > 0)
      body.repositories = [...request.repositories];
    if (request.repositoryIds && request.repositoryIds.length > 0)
      body.repository_ids = [...request.repositoryIds];
    const raw = await this.#jwtRequest(
      app,
      "apps/create-installation-access-token",
      "POST",
      `/app/installations/${installationId}/access_tokens`,
      body,
      installationId,
    );
    const t = parse(tokenSchema, raw, "POST access_tokens");
    const expiresAt = Date.parse(t.expires_at);
    if (!Number.isFinite(expiresAt)) {
      throw new GhatError(
        "GitHubUnavailable",
        `GitHub returned an unreadable expires_at "${t.expires_at.slice(0, 40)}"`,
      );
    }
    return {
      token: t.token,
      expiresAt,
      permissions: t.permissions ?? {},
      repositorySelection: t.repository_selection ?? "all",
      ...(t.repositories
        ? { repositories: t.repositories.map((r) => ({ id: r.id, name: r.name, fullName: r.full_name })) }
        : {}),
    };
  }

  /** Revokes a token; an already dead token (401) counts as revoked. */
  async revokeToken(token: string, installationId?: number): Promise<void> {
    const ctx = this.#ctx(
      "apps/revoke-installation-access-token",
      "DELETE",
      "/installation/token",
      installationId,
    );
    const res = await this.#send(ctx, { authorization: `token ${token}` });
    if (res.status === 204 || res.status === 401) {
      await res.text();
      return;
    }
    throw await this.#error(res, ctx);
  }

  async #jwtRequest(
    app: AppCredentials,
    route: string,
    method: string,
    path: string,
    body?: unknown,
    installationId?: number,
  ) {
    return (await this.#jwtRequestWithHeaders(app, route, method, path, body, installationId)).body;
  }

  async #jwtRequestWithHeaders(
    app: AppCredentials,
    route: string,
    method: string,
    path: string,
    body?: unknown,
    installationId?: number,
  ): Promise<{ body: unknown; headers: { get(name: string): string | null } }> {
    const ctx = this.#ctx(route, method, path, installationId);
    for (let attempt = 0; ; attempt++) {
      const jwt = await signAppJwt({
        key: app.key,
        issuer: issuer(app),
        nowMs: this.#o.clock.now(),
        offsetMs: this.#offsetMs,
      });
      const res = await this.#send(ctx, { authorization: `Bearer ${jwt}` }, body);
      if (res.ok) {
        const text = await res.text();
        return { body: text === "" ? {} : parseJson(text, ctx), headers: res.headers };
      }
      const err = await this.#error(res, ctx);
      const date = Date.parse(res.headers.get("date") ?? "");
      if (attempt === 0 && err.status === 401 && isClockError(401, err.message) && Number.isFinite(date)) {
        // GitHub's clock differs from ours: sign once more on GitHub's time, and keep the offset.
        this.#offsetMs = date - this.#o.clock.now();
        continue;
      }
      throw err;
    }
  }

  #ctx(route: string, method: string, path: string, installationId?: number): ErrorContext {
    return { route, method, path, now: this.#o.clock.now(), installationId };
  }

  async #send(ctx: ErrorContext, auth: Record<string, string>, body?: unknown) {
    const started = this.#o.clock.now();
    const headers: Record<string, string> = {
      accept: "application/vnd.github+json",
      "x-github-api-version": this.#o.apiVersion ?? "2022-11-28",
      "user-agent": this.#o.userAgent ?? "ghat",
      ...auth,
    };
    if (this.#o.tokenFormat) headers["x-github-stateless-s2s-token"] = this.#o.tokenFormat;
    if (body !== undefined) headers["content-type"] = "application/json";
    try {
      const res = await this.#fetch(`${this.#base}${ctx.path}`, {
        method: ctx.method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.#o.timeoutMs ?? 10_000),
        ...(this.#dispatcher ? { dispatcher: this.#dispatcher } : {}),
      });
      this.#o.onRequest?.({
        route: ctx.route,
        method: ctx.method,
        status: res.status,
        durationMs: this.#o.clock.now() - started,
      });
      this.#rateLimit(res.headers, ctx.installationId);
      return res;
    } catch (err) {
      this.#o.onRequest?.({
        route: ctx.route,
        method: ctx.method,
        status: 0,
        durationMs: this.#o.clock.now() - started,
      });
      throw networkError(err, ctx);
    }
  }

  #rateLimit(headers: { get(name: string): string | null }, installationId: number | undefined): void {
    const limit = Number(headers.get("x-ratelimit-limit"));
    if (installationId === undefined || !Number.isFinite(limit) || headers.get("x-ratelimit-limit") === null)
      return;
    this.#o.onRateLimit?.(installationId, {
      limit,
      remaining: Number(headers.get("x-ratelimit-remaining") ?? 0),
      used: Number(headers.get("x-ratelimit-used") ?? 0),
      reset: Number(headers.get("x-ratelimit-reset") ?? 0),
    });
  }

  async #error(
    res: { status: number; headers: { get(name: string): string | null }; text(): Promise<string> },
    ctx: ErrorContext,
  ): Promise<GhatError> {
    let message = "";
    try {
      const text = await res.text();
      const parsed: unknown = text ? JSON.parse(text) : {};
      if (parsed && typeof parsed === "object" && "message" in parsed) message = String(parsed.message);
    } catch {
      message = "";
    }
    return classifyGitHubError(res.status, (n) => res.headers.get(n), message, {
      ...ctx,
      now: this.#o.clock.now(),
    });
  }
}

function issuer(app: AppCredentials): string {
  if (app.appId !== undefined) return String(app.appId);
  if (app.clientId) return app.clientId;
  throw new GhatError("InvalidSpec", "the App has neither appId nor clientId");
}

function toInstallation(i: z.infer<typeof installationSchema>): Installation {
  return {
    id: i.id,
    appId: i.app_id,
    account: { login: i.account?.login ?? "", type: i.account?.type ?? "Organization" },
    repositorySelection: i.repository_selection,
    permissions: i.permissions,
    suspendedAt: i.suspended_at ?? null,
  };
}

function parse<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const r = schema.safeParse(body);
  if (!r.success)
    throw new GhatError(
      "GitHubUnavailable",
      `GitHub's answer to ${what} is not what its API describes: ${z.prettifyError(r.error).slice(0, 300)}`,
    );
  return r.data;
}

function parseJson(text: string, ctx: ErrorContext): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new GhatError("GitHubUnavailable", `GitHub's answer to ${ctx.method} ${ctx.path} is not JSON`);
  }
}

/** The rel="next" URL of a Link header, as a path relative to the base URL. */
export function nextLink(link: string | null, base: string): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(",")) {
    const m = part.match(/<([^>]+)>\s*;\s*rel="next"/);
    if (m?.[1]) return m[1].startsWith(base) ? m[1].slice(base.length) : m[1];
  }
  return undefined;
}

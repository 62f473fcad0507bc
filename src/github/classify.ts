import { type ErrorCode, GhatError, redact } from "../core/errors.ts";
import type { InstallationRef } from "./types.ts";

/** Where an answer came from: enough to write a message a user can act on. */
export interface GitHubErrorContext {
  /** GitHub's operation id, e.g. `apps/create-installation-access-token`. */
  route: string;
  method: string;
  /** Path below the API base URL, e.g. `/app/installations/42/access_tokens`. */
  path: string;
  /** Epoch ms (from the Clock): retry times are computed from it. */
  now: number;
  /** The JWT's issuer, to name an App GitHub does not know. */
  issuer?: string | number | undefined;
  /** The installation the request was about, when it was about one. */
  installation?: InstallationRef | undefined;
  /** Wait after a secondary rate limit that names no retry-after; default (GitHub's ask) 60 s. */
  secondaryWaitMs?: number | undefined;
  /**
   * The API base URL asked (e.g. `https://HOST/api/v3`): names the host in messages and decides
   * whether a redirect's `Location` is same-origin (only then is it quoted).
   */
  baseUrl?: string | undefined;
}

/** Response headers: a fetch `Headers` or a plain lower-case record. */
export type HeaderSource =
  | { get(name: string): string | null }
  | Readonly<Record<string, string | undefined>>;

/** Routes whose 404 means "no such installation" (as opposed to a wrong API URL). */
const installationRoutes = new Set([
  "apps/get-installation",
  "apps/get-org-installation",
  "apps/get-user-installation",
  "apps/get-repo-installation",
  "apps/create-installation-access-token",
]);

/** GitHub's time-claim errors: the one case a careful client re-signs (with GitHub's clock). */
export function isTimeClaimError(status: number, message: string): boolean {
  return status === 401 && /'(Expiration time|Issued at)' claim/i.test(message);
}

/** How much of GitHub's own `message` (with its `errors`) an error message may quote. */
export const maxQuotedMessageChars = 200;

/**
 * GitHub's `message` from an error body (`{"message", "documentation_url", "status"}`), with
 * the messages of a validation error's `errors` appended; `json` is false when the body is
 * not GitHub's JSON error shape (an HTML page from a wrong URL, a proxy's text). Only GitHub's
 * JSON `message` is ever quoted, redacted, cut to 200 characters, control characters made
 * spaces: anything else a server sends (it may be a proxy or an internal host) is not
 * reflected into status and events.
 */
export function githubMessage(body: unknown): { message: string; json: boolean } {
  let value = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return { message: "", json: false };
    }
  }
  if (value === null || typeof value !== "object" || Array.isArray(value))
    return { message: "", json: false };
  const record = value as { message?: unknown; errors?: unknown };
  if (typeof record.message !== "string") return { message: "", json: false };
  const parts = [record.message];
  if (Array.isArray(record.errors)) {
    for (const e of record.errors.slice(0, 10)) {
      if (typeof e === "string") parts.push(e);
      else if (e && typeof e === "object" && typeof (e as { message?: unknown }).message === "string") {
        parts.push((e as { message: string }).message);
      }
    }
  }
  return { message: quotable(parts.join("; ")), json: true };
}

/**
 * Text from a remote answer made safe to quote: control characters (newlines included) become
 * spaces, credentials are redacted, and it is cut to `max` characters (after redaction, so a
 * cut never leaves a token's tail behind).
 */
export function quotable(text: string, max = maxQuotedMessageChars): string {
  // A first cut keeps redaction's regular expressions linear on a large body.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
  const clean = text.slice(0, 4 * max + 1000).replace(/[\u0000-\u001f\u007f]/g, " ");
  return redact(clean).replace(/ {2,}/g, " ").trim().slice(0, max);
}

/** The host of an API base URL, for messages; "the GitHub API" when unknown. */
export function hostOf(url: string | undefined): string {
  if (url === undefined) return "the GitHub API";
  try {
    return new URL(url).host;
  } catch {
    return "the configured URL";
  }
}

/**
 * Turns one GitHub error answer into a GhatError: a code (which decides retry and the Ready
 * reason), the HTTP status, a retry time for rate limits, and a message with GitHub's own
 * words, the status and the route, never a credential.
 * Rate-limit handling follows GitHub's guidance:
 * @see https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#handle-rate-limit-errors-appropriately
 */
export function classifyGitHubError(
  status: number,
  headers: HeaderSource,
  body: unknown,
  context: GitHubErrorContext,
): GhatError {
  const header = (name: string): string | null => readHeader(headers, name);
  const { message, json } = githubMessage(body);
  const said = message.replace(/\s+/g, " ").trim();
  const lower = said.toLowerCase();
  const where = `${context.method} ${context.path}`;
  const empty = body === undefined || body === null || (typeof body === "string" && body.trim() === "");
  // A body that is not GitHub's JSON is never quoted: it may come from a proxy or an internal host.
  const answer =
    json || empty
      ? `GitHub answered ${status}${said ? ` "${said}"` : ""} to ${where}`
      : `HTTP ${status} from ${hostOf(context.baseUrl)} (not a GitHub API answer) to ${where}`;
  const error = (code: ErrorCode, summary: string, retryAt?: number) =>
    make(code, `${summary}: ${answer}`, status, retryAt);

  if (status >= 300 && status < 400) return redirect(status, header("location"), context);

  if (status === 403 || status === 429) {
    const reset = seconds(header("x-ratelimit-reset"));
    if (header("x-ratelimit-remaining") === "0" || /\brate limit exceeded\b/.test(lower)) {
      if (!lower.includes("secondary")) {
        const retryAt = reset !== undefined ? reset * 1000 : context.now + 60_000;
        return error("RateLimited", `primary rate limit exhausted until ${iso(retryAt)}`, retryAt);
      }
    }
    const after = retryAfter(header("retry-after"), context.now);
    if (lower.includes("secondary rate limit") || after !== undefined || status === 429) {
      // GitHub: honour retry-after; without it wait at least a minute.
      const retryAt = after ?? context.now + (context.secondaryWaitMs ?? 60_000);
      return error("RateLimited", `secondary rate limit hit; retry after ${iso(retryAt)}`, retryAt);
    }
    if (lower.includes("suspended")) {
      return error(
        "InstallationSuspended",
        "the installation is suspended; an owner of the account must unsuspend the App",
      );
    }
    return error("JWTRejected", "GitHub refused access to the App");
  }

  if (status === 401) {
    if (isTimeClaimError(status, message)) {
      return error(
        "JWTRejected",
        "GitHub refused the time claims of the App's JWT: this machine's clock is too far from GitHub's (ghat corrects once by GitHub's Date header)",
      );
    }
    if (lower.includes("json web token could not be decoded")) {
      return error(
        "JWTRejected",
        "GitHub could not verify the App's JWT: the private key does not belong to this App, or the App id / client id is wrong",
      );
    }
    if (lower.includes("bad credentials")) {
      return error("JWTRejected", "GitHub refused the credentials (expired or revoked)");
    }
    return error("JWTRejected", "GitHub refused the App's credentials");
  }

  if (status === 404) {
    if (lower.includes("integration not found")) {
      return error(
        "JWTRejected",
        `GitHub knows no App with ${describeIssuer(context.issuer)}; check the App id or client id (and, for Enterprise Server, the API URL)`,
      );
    }
    if (installationRoutes.has(context.route)) {
      const wrongUrl = json ? "" : " (is the API URL right? Enterprise Server uses https://HOST/api/v3)";
      return error("InstallationNotFound", `${describeMissing(context.installation)}${wrongUrl}`);
    }
    return error(
      "InvalidSpec",
      "GitHub has no such route; check the API URL (Enterprise Server uses https://HOST/api/v3)",
    );
  }

  if (status === 422) {
    if (/permission/.test(lower)) {
      return error(
        "PermissionsNotGranted",
        "GitHub did not grant the requested permissions (not granted to the installation, or above its level)",
      );
    }
    if (/repositor|too many|maximum/.test(lower)) {
      return error(
        "RepositoriesNotGranted",
        "GitHub did not grant the requested repositories (not covered by the installation, missing, or more than 500)",
      );
    }
    return error("InvalidSpec", "GitHub refused the request");
  }
  if (status === 400) return error("InvalidSpec", "GitHub could not parse the request");
  if (status >= 500) return error("GitHubUnavailable", "GitHub is unavailable");
  return error("GitHubUnavailable", "GitHub gave an unexpected answer");
}

/**
 * ghat never follows redirects: a followed redirect carries the App's JWT or a token to
 * wherever the `Location` points, and once let a token escape a policy to another
 * organization (a repository transferred there). GitHub answers 301 for a renamed or
 * transferred repository's installation lookup: the spec must name the new owner/repository.
 * The `Location` is quoted only when it stays on the API's origin (it may name internal hosts).
 */
function redirect(status: number, location: string | null, context: GitHubErrorContext): GhatError {
  const where = `${context.method} ${context.path}`;
  const ref = context.installation;
  if (
    (status === 301 || status === 308) &&
    context.route === "apps/get-repo-installation" &&
    ref !== undefined &&
    "repository" in ref
  ) {
    return make(
      "InstallationNotFound",
      `repository ${ref.repository} has moved (GitHub answered ${status}); name its new owner/repository (${where})`,
      status,
    );
  }
  const target = sameOriginPath(location, context.baseUrl);
  return make(
    "InvalidResponse",
    `${hostOf(context.baseUrl)} answered a redirect (${status}) to ${target ?? "another location"}; ghat does not follow redirects (${where})`,
    status,
  );
}

/** The path (and query) of a `Location` on the base URL's origin, made quotable; else undefined. */
function sameOriginPath(location: string | null, baseUrl: string | undefined): string | undefined {
  if (location === null || baseUrl === undefined) return undefined;
  try {
    const base = new URL(baseUrl);
    const url = new URL(location, `${base.origin}${base.pathname.replace(/\/*$/, "/")}`);
    if (url.origin !== base.origin || url.username || url.password) return undefined;
    const path = quotable(`${url.pathname}${url.search}`, 200);
    return path === "" ? undefined : path;
  } catch {
    return undefined;
  }
}

/** What went wrong when no HTTP answer came: DNS, refused or reset connection, TLS, timeout. */
export interface NetworkErrorContext {
  route: string;
  method: string;
  path: string;
  /** The full URL asked for (any user:password is removed from the message). */
  url: string;
  timeoutMs: number;
}

/** A request that got no answer is always `GitHubUnavailable` (retryable), status undefined. */
export function classifyNetworkError(err: unknown, context: NetworkErrorContext): GhatError {
  const host = hostOf(context.url);
  const where = `${context.method} ${context.path}`;
  const e = err as { name?: unknown; message?: unknown; cause?: unknown };
  const code = errorCode(err);
  let detail: string;
  if (e?.name === "TimeoutError" || e?.name === "AbortError" || code === "UND_ERR_HEADERS_TIMEOUT") {
    detail = `no answer within ${context.timeoutMs} ms`;
  } else if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    detail = `DNS lookup of ${host} failed (${code})`;
  } else if (code === "ECONNREFUSED") {
    detail = "connection refused";
  } else if (code === "ECONNRESET" || code === "UND_ERR_SOCKET" || code === "EPIPE") {
    detail = "connection reset";
  } else if (code !== undefined && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code)) {
    detail = `the TLS certificate is not trusted (${code}); for a private CA, set the App's CA bundle`;
  } else {
    const text = [e?.message, (e?.cause as { message?: unknown } | undefined)?.message]
      .filter((m): m is string => typeof m === "string" && m !== "")
      .join(": ");
    detail = `${code ? `${code} ` : ""}${text || "request failed"}`;
  }
  return new GhatError(
    "GitHubUnavailable",
    redact(`could not reach GitHub at ${host}: ${scrubUserinfo(detail)} (${where})`).slice(0, 500),
    { cause: err },
  );
}

function make(code: ErrorCode, message: string, status: number, retryAt?: number): GhatError {
  return new GhatError(code, redact(message), {
    status,
    ...(retryAt === undefined ? {} : { retryAt }),
  });
}

function readHeader(headers: HeaderSource, name: string): string | null {
  if (typeof headers.get === "function") return (headers as { get(n: string): string | null }).get(name);
  const value = (headers as Readonly<Record<string, string | undefined>>)[name];
  return value === undefined ? null : value;
}

function seconds(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** `retry-after` is seconds, or (HTTP allows it) a date. */
function retryAfter(value: string | null, now: number): number | undefined {
  const s = seconds(value);
  if (s !== undefined) return now + s * 1000;
  const date = value === null ? Number.NaN : Date.parse(value);
  return Number.isFinite(date) ? Math.max(date, now) : undefined;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function describeIssuer(issuer: string | number | undefined): string {
  if (typeof issuer === "number") return `App id ${issuer}`;
  if (typeof issuer === "string") return `client id ${issuer.slice(0, 40)}`;
  return "this App id or client id";
}

function describeMissing(ref: InstallationRef | undefined): string {
  if (ref === undefined) return "installation not found for this App";
  if ("id" in ref) return `installation ${ref.id} does not exist or belongs to another App`;
  if ("owner" in ref) return `the App is not installed on account ${ref.owner}`;
  return `the App is not installed on repository ${ref.repository} (or the repository does not exist)`;
}

function errorCode(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  let current: unknown = err;
  while (current && typeof current === "object" && !seen.has(current)) {
    seen.add(current);
    const c = current as { code?: unknown; cause?: unknown; errors?: unknown };
    if (typeof c.code === "string" && c.code !== "") return c.code;
    if (Array.isArray(c.errors) && c.errors.length > 0) {
      const inner = errorCode(c.errors[0]);
      if (inner) return inner;
    }
    current = c.cause;
  }
  return undefined;
}

function scrubUserinfo(text: string): string {
  return text.replace(/(\w+:\/\/)[^/\s@]*@/g, "$1");
}

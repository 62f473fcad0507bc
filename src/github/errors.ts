import { GhatError, redact } from "../core/errors.ts";

export interface ErrorContext {
  route: string;
  method: string;
  path: string;
  now: number;
  installationId?: number | undefined;
}

export type HeaderGetter = (name: string) => string | null;

/** GitHub's time-claim messages: a careful client re-signs once with the server's clock. */
export function isClockError(status: number, message: string): boolean {
  return (
    status === 401 && (message.includes("'Expiration time' claim") || message.includes("'Issued at' claim"))
  );
}

/**
 * Turns one GitHub error response into a GhatError with a reason, a readable message (GitHub's
 * own words, the status and the route; never a credential) and, for rate limits, when to retry.
 */
export function classifyGitHubError(
  status: number,
  headers: HeaderGetter,
  message: string,
  ctx: ErrorContext,
): GhatError {
  const said = redact(message || `HTTP ${status}`).slice(0, 300);
  const where = `${ctx.method} ${ctx.path}`;
  const text = (what: string) => `${what}: GitHub answered ${status} "${said}" to ${where}`;
  const remaining = headers("x-ratelimit-remaining");
  const lower = said.toLowerCase();

  if ((status === 403 || status === 429) && (remaining === "0" || lower.includes("rate limit exceeded"))) {
    const reset = Number(headers("x-ratelimit-reset"));
    const retryAt = Number.isFinite(reset) && reset > 0 ? reset * 1000 : ctx.now + 60_000;
    return new GhatError("RateLimited", text("primary rate limit"), { status, retryAt });
  }
  if ((status === 403 || status === 429) && lower.includes("secondary rate limit")) {
    const after = Number(headers("retry-after"));
    const retryAt = ctx.now + (Number.isFinite(after) && after > 0 ? after * 1000 : 60_000);
    return new GhatError("RateLimited", text("secondary rate limit"), { status, retryAt });
  }
  if (status === 429)
    return new GhatError("RateLimited", text("rate limited"), { status, retryAt: ctx.now + 60_000 });
  if (status === 401) {
    if (lower.includes("bad credentials"))
      return new GhatError("JWTRejected", text("credentials rejected"), { status });
    return new GhatError(
      "JWTRejected",
      text("the App's JWT was rejected (check the App id and private key)"),
      { status },
    );
  }
  if (status === 404 && lower.includes("integration not found")) {
    return new GhatError("JWTRejected", text("GitHub does not know this App id or client id"), { status });
  }
  if (status === 404) {
    const what =
      ctx.installationId === undefined
        ? "installation not found"
        : `installation ${ctx.installationId} not found for this App`;
    return new GhatError("InstallationNotFound", text(what), { status });
  }
  if (status === 403 && lower.includes("suspended")) {
    return new GhatError("InstallationSuspended", text("the installation is suspended"), { status });
  }
  if (status === 422 && (lower.includes("repository") || lower.includes("repositories"))) {
    return new GhatError("RepositoriesNotGranted", text("repositories not granted"), { status });
  }
  if (status === 422)
    return new GhatError("PermissionsNotGranted", text("permissions not granted"), { status });
  if (status === 400)
    return new GhatError("InvalidSpec", text("GitHub refused the request body"), { status });
  if (status >= 500) return new GhatError("GitHubUnavailable", text("GitHub is unavailable"), { status });
  if (status === 403) return new GhatError("JWTRejected", text("forbidden"), { status });
  return new GhatError("GitHubUnavailable", text("unexpected answer"), { status });
}

/** A request that got no HTTP answer (DNS, reset, TLS, timeout). */
export function networkError(err: unknown, ctx: ErrorContext): GhatError {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  const detail =
    e.name === "TimeoutError" || e.name === "AbortError"
      ? "timed out"
      : (e.cause?.code ?? e.cause?.message ?? e.message ?? "failed");
  return new GhatError(
    "GitHubUnavailable",
    `could not reach GitHub: ${ctx.method} ${ctx.path} ${redact(String(detail))}`,
    { cause: err },
  );
}

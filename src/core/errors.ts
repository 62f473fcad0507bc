/**
 * Typed errors. Every failure ghat can meet is one of these codes; each code is also a reason
 * of the Ready condition (see conditions.ts), so a user sees the same word in status, events
 * and metrics. Messages must never contain a token, a key or an Authorization header.
 */
export const errorCodes = [
  /** The spec cannot be acted on (bad reference, bad template, conflicting fields). */
  "InvalidSpec",
  /** The referenced GitHubApp / ClusterGitHubApp does not exist. */
  "AppNotFound",
  /** The private key Secret or its key is missing. */
  "PrivateKeyNotFound",
  /** The private key cannot be parsed (OpenSSH, garbage, wrong type). */
  "InvalidPrivateKey",
  /** GitHub rejected the App's JWT (401 bad JWT, 404 Integration not found, time claims). */
  "JWTRejected",
  /** The installation (by id, owner or repository) does not exist for this App. */
  "InstallationNotFound",
  /** The installation is suspended (403). */
  "InstallationSuspended",
  /** GitHub refused the requested permissions (422). */
  "PermissionsNotGranted",
  /** GitHub refused the requested repositories (422). */
  "RepositoriesNotGranted",
  /** Primary or secondary rate limit. */
  "RateLimited",
  /** 5xx, timeouts, connection errors. */
  "GitHubUnavailable",
  /** A Secret with the target name exists and is not managed by ghat. */
  "SecretConflict",
  /** A ClusterGitHubApp's policy does not allow this request. */
  "NotPermitted",
  /** The Kubernetes API failed in a way that should be retried. */
  "KubernetesError",
] as const;

export type ErrorCode = (typeof errorCodes)[number];

/** Codes that clear by themselves (retry with backoff); the others wait for a change. */
const retryableCodes: ReadonlySet<ErrorCode> = new Set([
  "RateLimited",
  "GitHubUnavailable",
  "KubernetesError",
]);

export interface GhatErrorOptions {
  /** HTTP status from GitHub or Kubernetes, when there was one. */
  status?: number;
  /** Earliest time (epoch ms) a retry makes sense: from retry-after or x-ratelimit-reset. */
  retryAt?: number;
  cause?: unknown;
}

export class GhatError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly status: number | undefined;
  readonly retryAt: number | undefined;

  constructor(code: ErrorCode, message: string, options: GhatErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GhatError";
    this.code = code;
    this.retryable = retryableCodes.has(code);
    this.status = options.status;
    this.retryAt = options.retryAt;
  }
}

export function isRetryable(code: ErrorCode): boolean {
  return retryableCodes.has(code);
}

/** Normalises anything thrown into a GhatError without leaking its message verbatim. */
export function toGhatError(err: unknown, fallback: ErrorCode = "KubernetesError"): GhatError {
  if (err instanceof GhatError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new GhatError(fallback, redact(message), { cause: err });
}

/**
 * Removes anything shaped like a GitHub token, a JWT, a PEM block or an Authorization header.
 * Used on every message that leaves the process (status, events, logs).
 */
export function redact(text: string): string {
  return (
    text
      .replace(/-----BEGIN [A-Z ]+-----[\s\S]*?(-----END [A-Z ]+-----|$)/g, "[REDACTED KEY]")
      .replace(/\b(gh[opusr]_[A-Za-z0-9._]{20,})/g, "[REDACTED TOKEN]")
      .replace(/\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g, "[REDACTED JWT]")
      // Whole words only: "githubapptokens.ghat.dev" is not a token.
      .replace(/\b(authorization["']?\s*[:=]\s*["']?(?:bearer |token )?)[^\s"',}]{8,}/gi, "$1[REDACTED]")
      .replace(/\b(token["']?\s*[:=]\s*["']?)[^\s"',}]{8,}/gi, "$1[REDACTED]")
      .replace(/\b((?:bearer|token) )(?=[^\s"',}]*[0-9_])[^\s"',}]{8,}/gi, "$1[REDACTED]")
  );
}

import type { ErrorCode, GhatError } from "../core/errors.ts";
import { retryCap, retryTime } from "../core/schedule.ts";

/**
 * Terminal errors whose fix sends ghat no event: GitHub-side changes, a foreign Secret going
 * away (ghat does not watch Secrets it does not own), and bugs. Retried slowly.
 */
const slowRetry: ReadonlySet<ErrorCode> = new Set([
  "SecretConflict",
  "JWTRejected",
  "InstallationNotFound",
  "InstallationSuspended",
  "PermissionsNotGranted",
  "RepositoriesNotGranted",
  "InternalError",
]);

export interface FailureInput {
  error: Pick<GhatError, "code" | "retryable" | "retryAt"> & { exact?: boolean };
  /** Consecutive failures, this one included. */
  failures: number;
  /** A number in [0, 1) for jitter. */
  random: number;
  now: number;
  /** What the Secrets hold (undefined: nothing usable), when the token could be observed. */
  held: { expiresAt: number } | undefined;
  /** The token's minimum remaining lifetime; undefined when nothing could be observed. */
  minRemainingMs: number | undefined;
  /** Retry interval for errors only GitHub-side changes fix. */
  terminalRetryMs: number;
}

/**
 * When to run a failed reconcile again (the one place, as controller-rs's error_policy):
 * undefined means "when an input changes" (spec-side errors).
 *
 * Retryable errors back off exponentially with jitter, never before `retry-after` or the
 * rate-limit reset. While a token is held, outages retry faster as it nears its minimum
 * remaining lifetime, so a refresh lands soon after GitHub answers again; with nothing
 * usable held they keep the floor's pace (docs/reliability.md). A server that answers
 * nonsense (InvalidResponse) gets no such cap: it backs off to 5 minutes, whatever refresh
 * policy its tenant chose. A wait that ends at a known time (ghat's own interval between two
 * mints of one token) retries then: backoff on top of it would only delay a refresh that is
 * due, past the retry the outage left it.
 */
export function retryAfterFailure(input: FailureInput): number | undefined {
  const { error, now } = input;
  if (error.exact && error.retryAt !== undefined) return Math.max(now, error.retryAt);
  const maxMs =
    input.minRemainingMs !== undefined && error.code !== "InvalidResponse"
      ? retryCap(input.held ? input.held.expiresAt - input.minRemainingMs - now : 0, input.minRemainingMs)
      : undefined;
  if (error.retryable)
    return retryTime({ failures: input.failures, random: input.random, retryAt: error.retryAt, now, maxMs });
  if (slowRetry.has(error.code)) return Math.max(now + input.terminalRetryMs, error.retryAt ?? 0);
  return undefined;
}

/** When to retry after the failure report itself (the status write) failed. */
export function retryAfterReportFailure(input: FailureInput): number {
  const maxMs =
    input.minRemainingMs !== undefined
      ? retryCap(
          input.held ? input.held.expiresAt - input.minRemainingMs - input.now : 0,
          input.minRemainingMs,
        )
      : undefined;
  return retryTime({ failures: input.failures, random: input.random, now: input.now, maxMs });
}

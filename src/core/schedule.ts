/**
 * When to mint again, derived from GitHub's expires_at (never a fixed interval).
 * Pure: callers pass the time and the jitter source.
 */

export interface RefreshInput {
  /** Epoch ms the token was minted (approximately: when GitHub answered). */
  issuedAt: number;
  /** Epoch ms from GitHub's expires_at. */
  expiresAt: number;
  /** Mint this long before expiry. */
  refreshBeforeMs: number;
  /** The Secret must never hold less lifetime than this. */
  minRemainingMs: number;
  /** A number in [0, 1): spreads refreshes of many tokens (derive it from the token's key for stability). */
  jitter: number;
}

/** Fraction of the refresh window used as jitter (refreshes move earlier, never later). */
export const jitterFraction = 0.1;

/**
 * refreshAt = expiresAt - refreshBefore - jitter, where jitter is up to 10% of the time
 * between minting and that point. If the lifetime GitHub gave is shorter than
 * refreshBefore (tests, Enterprise Server), the refresh lands halfway between the minimum
 * remaining lifetime and issue time, so the guarantee still holds.
 */
export function refreshTime(input: RefreshInput): number {
  const lifetime = input.expiresAt - input.issuedAt;
  let before = input.refreshBeforeMs;
  if (before >= lifetime) {
    before = input.minRemainingMs + Math.max(0, lifetime - input.minRemainingMs) / 2;
  }
  const nominal = input.expiresAt - before;
  const window = Math.max(0, nominal - input.issuedAt);
  // Whole seconds, like GitHub's expires_at, so RFC 3339 round trips are exact.
  return Math.floor((nominal - window * jitterFraction * clamp01(input.jitter)) / 1000) * 1000;
}

/** A stable number in [0, 1) from a string, for jitter that survives restarts. */
export function stableJitter(seed: string): number {
  let h = 2166136261;
  for (let i = 0; i < seed.length; i++) {
    h ^= seed.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) / 2 ** 32;
}

/** The longest retry delay after a failure, whatever the number of failures: 5 min. */
export const maxRetryMs = 5 * 60_000;

export interface BackoffInput {
  /** Consecutive failures so far, 1 for the first. */
  failures: number;
  baseMs?: number;
  maxMs?: number | undefined;
  /** A number in [0, 1). */
  random: number;
  /** Earliest retry the server asked for (retry-after, x-ratelimit-reset), epoch ms. */
  retryAt?: number | undefined;
  now: number;
}

/**
 * Exponential backoff with full jitter over the upper half (delay in [d/2, d]), capped, and
 * never earlier than what GitHub asked for.
 */
export function retryTime(input: BackoffInput): number {
  const base = input.baseMs ?? 1_000;
  const max = input.maxMs ?? maxRetryMs;
  const exp = Math.min(max, base * 2 ** Math.min(30, Math.max(0, input.failures - 1)));
  const delay = exp / 2 + (exp / 2) * clamp01(input.random);
  return Math.max(input.now + Math.round(delay), input.retryAt ?? 0);
}

function clamp01(x: number): number {
  return Math.min(Math.max(x, 0), 0.999999);
}

/**
 * The longest retry delay while a token is held: a quarter of the time left before it falls
 * below its minimum remaining lifetime (`headroomMs`), so retries land before that moment;
 * never under a tenth of the minimum lifetime (1 s to 60 s), so a token already below it is
 * retried at a bounded pace, not in a hot loop; never over `maxRetryMs`.
 */
export function retryCap(headroomMs: number, minRemainingMs: number): number {
  const floor = Math.min(60_000, Math.max(1_000, minRemainingMs / 10));
  return Math.round(Math.max(floor, Math.min(maxRetryMs, headroomMs / 4)));
}

export interface RateLimitConfig {
  /** Requests per window (GitHub: 5,000 per hour per installation). */
  limit: number;
  /** Window length in seconds (GitHub: 3600). */
  windowSeconds: number;
}

export interface RateLimitAnswer {
  exceeded: boolean;
  headers: Record<string, string>;
}

/**
 * GitHub's primary rate limit for installation tokens: one budget per installation, shared by
 * all its tokens, refilled when the window that began with its first request ends.
 */
export class RateLimiter {
  readonly #config: RateLimitConfig | false;
  readonly #windows = new Map<number, { used: number; resetAt: number }>();

  constructor(config: RateLimitConfig | false) {
    this.#config = config;
  }

  /** Spends one request of `installationId`'s budget at `nowMs`, unless it is spent already. */
  consume(installationId: number, nowMs: number): RateLimitAnswer {
    const config = this.#config;
    if (!config) return { exceeded: false, headers: {} };
    let w = this.#windows.get(installationId);
    if (!w || nowMs >= w.resetAt) {
      w = { used: 0, resetAt: nowMs + config.windowSeconds * 1000 };
      this.#windows.set(installationId, w);
    }
    const exceeded = w.used >= config.limit;
    if (!exceeded) w.used++;
    return {
      exceeded,
      headers: rateLimitHeaders(config.limit, w.used, Math.ceil(w.resetAt / 1000)),
    };
  }

  /** Forgets what was spent (one installation, or all). */
  reset(installationId?: number): void {
    if (installationId === undefined) this.#windows.clear();
    else this.#windows.delete(installationId);
  }
}

export function rateLimitHeaders(
  limit: number,
  used: number,
  resetEpochSeconds: number,
): Record<string, string> {
  return {
    "x-ratelimit-limit": String(limit),
    "x-ratelimit-remaining": String(Math.max(0, limit - used)),
    "x-ratelimit-used": String(used),
    "x-ratelimit-reset": String(resetEpochSeconds),
    "x-ratelimit-resource": "core",
  };
}

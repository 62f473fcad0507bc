/**
 * ghat's own limits on minting, so a hot loop (a Secret that keeps being deleted, a token that
 * arrives already too short, many tokens on one installation) cannot burn GitHub's rate limit
 * or flood the audit log. Pure: the caller passes the time; nothing here reads a clock.
 *
 *   check(keys, now)  before a mint: may it happen now, or when may it?
 *   record(keys, now) after a successful mint: it counts against every limit.
 *   forget(token)     when a GitHubAppToken is deleted.
 *
 * Three limits, each named by the reason a refusal reports (for metrics and the Throttled
 * condition): a minimum interval between mints of one GitHubAppToken, and token buckets per
 * installation and per App.
 */

/** Why a mint is held back; a closed list, fit for a metrics label. */
export const throttleReasons = ["token-interval", "installation", "app"] as const;
export type ThrottleReason = (typeof throttleReasons)[number];

/** What a mint counts against. Keys are opaque strings; any text is safe (Maps, not objects). */
export interface MintKeys {
  /** The GitHubAppToken, e.g. "namespace/name". */
  token: string;
  /** The App, e.g. its kind, name and base URL. */
  app: string;
  /** The installation, qualified by the App or host: ids are unique only per GitHub. */
  installation: string;
}

/** A token bucket: `burst` mints at once, refilled at `perMinute`. */
export interface RateLimit {
  perMinute: number;
  burst: number;
}

export interface MintLimits {
  /** Least time between two successful mints of one GitHubAppToken. */
  tokenIntervalMs: number;
  installation: RateLimit;
  app: RateLimit;
  /** Most keys remembered per limit; beyond it, the least recently used are dropped. */
  maxEntries: number;
}

export const defaultMintLimits: MintLimits = {
  tokenIntervalMs: 60_000,
  installation: { perMinute: 60, burst: 30 },
  app: { perMinute: 300, burst: 100 },
  maxEntries: 10_000,
};

export interface MintLimitsInput {
  tokenIntervalMs?: number | undefined;
  installation?: Partial<RateLimit> | undefined;
  app?: Partial<RateLimit> | undefined;
  maxEntries?: number | undefined;
}

export type MintVerdict = { allowed: true } | { allowed: false; reason: ThrottleReason; retryAt: number };

interface Bucket {
  /** Mints available at `at`; below zero when mints were recorded without a check. */
  tokens: number;
  at: number;
}

const minute = 60_000;

export class MintLimiter {
  readonly limits: MintLimits;
  /** Last successful mint per GitHubAppToken, least recently used first. */
  readonly #lastMint = new Map<string, number>();
  readonly #installations = new Map<string, Bucket>();
  readonly #apps = new Map<string, Bucket>();

  constructor(input: MintLimitsInput = {}) {
    this.limits = resolveLimits(input);
  }

  /**
   * May a mint for these keys happen at `now`? When not, `retryAt` is the earliest time every
   * limit allows it, and `reason` names the limit that holds it back longest (in the order
   * of throttleReasons on a tie). Checking changes nothing.
   */
  check(keys: MintKeys, now: number): MintVerdict {
    const waits: [ThrottleReason, number | undefined][] = [
      ["token-interval", this.#intervalWait(keys.token, now)],
      ["installation", bucketWait(this.#installations.get(keys.installation), this.limits.installation, now)],
      ["app", bucketWait(this.#apps.get(keys.app), this.limits.app, now)],
    ];
    let verdict: MintVerdict = { allowed: true };
    for (const [reason, retryAt] of waits) {
      if (retryAt === undefined) continue;
      if (verdict.allowed || retryAt > verdict.retryAt) verdict = { allowed: false, reason, retryAt };
    }
    return verdict;
  }

  /** Counts a successful mint at `now` against every limit. */
  record(keys: MintKeys, now: number): void {
    touch(this.#lastMint, keys.token, now);
    take(this.#installations, keys.installation, this.limits.installation, now);
    take(this.#apps, keys.app, this.limits.app, now);
    if (
      this.#lastMint.size > this.limits.maxEntries ||
      this.#installations.size > this.limits.maxEntries ||
      this.#apps.size > this.limits.maxEntries
    ) {
      this.prune(now);
    }
  }

  /** Drops what is kept for a GitHubAppToken (it was deleted). Its mints still count for its App and installation. */
  forget(tokenKey: string): void {
    this.#lastMint.delete(tokenKey);
  }

  /**
   * Drops what no longer limits anything: intervals that have passed and buckets full again
   * (the same as no bucket). Then, if a map is still over `maxEntries`, its least recently
   * used keys: forgetting errs towards allowing a mint, and only under a flood of keys.
   */
  prune(now: number): void {
    for (const [key, at] of this.#lastMint) {
      if (now - at >= this.limits.tokenIntervalMs) this.#lastMint.delete(key);
    }
    for (const [buckets, limit] of [
      [this.#installations, this.limits.installation],
      [this.#apps, this.limits.app],
    ] as const) {
      for (const [key, bucket] of buckets) {
        if (level(bucket, limit, now) >= limit.burst) buckets.delete(key);
      }
    }
    for (const map of [this.#lastMint, this.#installations, this.#apps]) {
      for (const key of map.keys()) {
        if (map.size <= this.limits.maxEntries) break;
        map.delete(key);
      }
    }
  }

  /** How many keys each limit remembers (for a gauge, and for tests). */
  get sizes(): { tokens: number; installations: number; apps: number } {
    return { tokens: this.#lastMint.size, installations: this.#installations.size, apps: this.#apps.size };
  }

  #intervalWait(token: string, now: number): number | undefined {
    const last = this.#lastMint.get(token);
    if (last === undefined) return undefined;
    // A clock that moved back makes `last` lie in the future: wait one interval from now at most.
    const retryAt = Math.min(last, now) + this.limits.tokenIntervalMs;
    return retryAt > now ? retryAt : undefined;
  }
}

/**
 * True when a token that was just minted is already below its minimum remaining lifetime
 * (GitHub's clock, a slow answer, or a lifetime shorter than asked). Minting again at once
 * would get the same: the caller must back off instead. An `expiresAt` that is not a
 * number counts as unusable.
 */
export function arrivedUnusable(expiresAt: number, now: number, minRemainingMs: number): boolean {
  return !(expiresAt - now >= minRemainingMs);
}

/** A readable message for a refusal, for the Throttled condition and events. */
export function throttleMessage(verdict: { reason: ThrottleReason; retryAt: number }): string {
  const what: Record<ThrottleReason, string> = {
    "token-interval": "this GitHubAppToken was minted less than the minimum interval ago",
    installation: "the installation's mint rate limit is used up",
    app: "the App's mint rate limit is used up",
  };
  return `mint held back until ${new Date(verdict.retryAt).toISOString()}: ${what[verdict.reason]}`;
}

/** Mints available in `bucket` at `now`, refilled since its last update, at most `burst`. */
function level(bucket: Bucket, limit: RateLimit, now: number): number {
  const elapsed = Math.max(0, now - bucket.at);
  return Math.min(limit.burst, bucket.tokens + (elapsed * limit.perMinute) / minute);
}

/**
 * When the bucket holds one whole mint again, or undefined if it does now. Counted from the
 * bucket's last update, so repeated checks agree; from `now` if the clock moved back.
 */
function bucketWait(bucket: Bucket | undefined, limit: RateLimit, now: number): number | undefined {
  if (bucket === undefined || level(bucket, limit, now) >= 1) return undefined;
  return Math.min(bucket.at, now) + Math.ceil(((1 - bucket.tokens) * minute) / limit.perMinute);
}

/**
 * Takes one mint from the bucket. It may go below zero (mints that ran concurrently, each
 * checked before the others were recorded); the debt is repaid before the next mint, and is
 * floored at one burst so a storm of records cannot lock a key out for long.
 */
function take(buckets: Map<string, Bucket>, key: string, limit: RateLimit, now: number): void {
  const bucket = buckets.get(key);
  const available = bucket === undefined ? limit.burst : level(bucket, limit, now);
  touch(buckets, key, { tokens: Math.max(-limit.burst, available - 1), at: now });
}

/** Sets a key and moves it to the most recently used end. */
function touch<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
}

function resolveLimits(input: MintLimitsInput): MintLimits {
  const d = defaultMintLimits;
  const limits: MintLimits = {
    tokenIntervalMs: input.tokenIntervalMs ?? d.tokenIntervalMs,
    installation: {
      perMinute: input.installation?.perMinute ?? d.installation.perMinute,
      burst: input.installation?.burst ?? d.installation.burst,
    },
    app: {
      perMinute: input.app?.perMinute ?? d.app.perMinute,
      burst: input.app?.burst ?? d.app.burst,
    },
    maxEntries: input.maxEntries ?? d.maxEntries,
  };
  const problems: string[] = [];
  if (!(Number.isFinite(limits.tokenIntervalMs) && limits.tokenIntervalMs >= 0)) {
    problems.push(`tokenIntervalMs must be a finite number >= 0, not ${limits.tokenIntervalMs}`);
  }
  for (const name of ["installation", "app"] as const) {
    const { perMinute, burst } = limits[name];
    if (!(Number.isFinite(perMinute) && perMinute > 0)) {
      problems.push(`${name}.perMinute must be a finite number > 0, not ${perMinute}`);
    }
    if (!(Number.isFinite(burst) && burst >= 1)) {
      problems.push(`${name}.burst must be a finite number >= 1, not ${burst}`);
    }
  }
  if (!(Number.isSafeInteger(limits.maxEntries) && limits.maxEntries >= 1)) {
    problems.push(`maxEntries must be an integer >= 1, not ${limits.maxEntries}`);
  }
  if (problems.length > 0) throw new RangeError(`invalid mint limits: ${problems.join("; ")}`);
  return limits;
}

import { describe, expect, it } from "vitest";
import {
  arrivedUnusable,
  defaultMintLimits,
  type MintKeys,
  MintLimiter,
  type MintLimitsInput,
  throttleMessage,
  throttleReasons,
} from "../../../src/core/limits.ts";

const t0 = Date.parse("2026-11-24T12:00:00Z");
const keys = (token = "ns/t0", installation = "app-a#1", app = "app-a"): MintKeys => ({
  token,
  installation,
  app,
});
/** Limits that leave the interval alone unless a test sets it. */
const only = (input: MintLimitsInput): MintLimitsInput => ({ tokenIntervalMs: 0, ...input });

describe("MintLimiter: minimum interval per GitHubAppToken", () => {
  it("allows the first mint, then holds the same token back for the interval", () => {
    const limiter = new MintLimiter();
    expect(limiter.check(keys(), t0)).toEqual({ allowed: true });
    limiter.record(keys(), t0);
    expect(limiter.check(keys(), t0 + 1)).toEqual({
      allowed: false,
      reason: "token-interval",
      retryAt: t0 + 60_000,
    });
    expect(limiter.check(keys(), t0 + 59_999).allowed).toBe(false);
    expect(limiter.check(keys(), t0 + 60_000)).toEqual({ allowed: true });
  });

  it("does not hold back another token", () => {
    const limiter = new MintLimiter();
    limiter.record(keys("ns/t0"), t0);
    expect(limiter.check(keys("ns/t1"), t0 + 1)).toEqual({ allowed: true });
  });

  it.each([
    [5_000, t0 + 4_999, false],
    [5_000, t0 + 5_000, true],
    [0, t0, true],
  ])("honours a configured interval of %d ms (checked at +%d)", (tokenIntervalMs, at, allowed) => {
    const limiter = new MintLimiter({ tokenIntervalMs });
    limiter.record(keys(), t0);
    expect(limiter.check(keys(), at).allowed).toBe(allowed);
  });

  it("forgets a deleted token", () => {
    const limiter = new MintLimiter();
    limiter.record(keys(), t0);
    limiter.forget("ns/t0");
    expect(limiter.check(keys(), t0 + 1)).toEqual({ allowed: true });
    expect(limiter.sizes.tokens).toBe(0);
  });

  it("waits at most one interval when the clock moved back", () => {
    const limiter = new MintLimiter();
    limiter.record(keys(), t0);
    expect(limiter.check(keys(), t0 - 3_600_000)).toMatchObject({ retryAt: t0 - 3_600_000 + 60_000 });
  });

  it("takes keys that look like object properties as plain strings", () => {
    const limiter = new MintLimiter();
    for (const k of ["__proto__", "constructor", "toString"]) {
      expect(limiter.check(keys(k, k, k), t0)).toEqual({ allowed: true });
      limiter.record(keys(k, k, k), t0);
      expect(limiter.check(keys(k, k, k), t0 + 1)).toMatchObject({
        allowed: false,
        reason: "token-interval",
      });
    }
  });
});

describe("MintLimiter: token buckets", () => {
  it.each([
    ["installation", only({ installation: { perMinute: 60, burst: 3 } }), 3, 1_000],
    ["app", only({ app: { perMinute: 6, burst: 2 } }), 2, 10_000],
  ] as const)("allows a burst per %s, then one mint per refill", (reason, limits, burst, refillMs) => {
    const limiter = new MintLimiter(limits);
    for (let i = 0; i < burst; i++) {
      expect(limiter.check(keys(`ns/t${i}`), t0)).toEqual({ allowed: true });
      limiter.record(keys(`ns/t${i}`), t0);
    }
    expect(limiter.check(keys("ns/next"), t0)).toEqual({ allowed: false, reason, retryAt: t0 + refillMs });
    expect(limiter.check(keys("ns/next"), t0 + refillMs - 1).allowed).toBe(false);
    expect(limiter.check(keys("ns/next"), t0 + refillMs)).toEqual({ allowed: true });
  });

  it("keeps installations apart, and counts them all against their App", () => {
    const limiter = new MintLimiter(
      only({ installation: { perMinute: 60, burst: 1 }, app: { perMinute: 60, burst: 2 } }),
    );
    limiter.record(keys("ns/a", "app-a#1"), t0);
    expect(limiter.check(keys("ns/b", "app-a#1"), t0)).toMatchObject({ reason: "installation" });
    expect(limiter.check(keys("ns/b", "app-a#2"), t0)).toEqual({ allowed: true });
    limiter.record(keys("ns/b", "app-a#2"), t0);
    expect(limiter.check(keys("ns/c", "app-a#3"), t0)).toMatchObject({ reason: "app" });
    expect(limiter.check(keys("ns/c", "app-b#3", "app-b"), t0)).toEqual({ allowed: true });
  });

  it("has the documented defaults: 30 at once per installation, then 60 a minute", () => {
    const limiter = new MintLimiter();
    for (let i = 0; i < 30; i++) {
      expect(limiter.check(keys(`ns/t${i}`), t0).allowed).toBe(true);
      limiter.record(keys(`ns/t${i}`), t0);
    }
    expect(limiter.check(keys("ns/next"), t0)).toEqual({
      allowed: false,
      reason: "installation",
      retryAt: t0 + 1_000,
    });
    expect(defaultMintLimits).toMatchObject({
      tokenIntervalMs: 60_000,
      installation: { perMinute: 60, burst: 30 },
      app: { perMinute: 300, burst: 100 },
    });
  });

  it("reports the limit that holds the mint back longest, with the time every limit allows it", () => {
    const limiter = new MintLimiter({
      tokenIntervalMs: 5_000,
      installation: { perMinute: 1, burst: 1 },
      app: { perMinute: 60, burst: 1 },
    });
    limiter.record(keys(), t0);
    expect(limiter.check(keys(), t0)).toEqual({
      allowed: false,
      reason: "installation",
      retryAt: t0 + 60_000,
    });
    expect(limiter.check(keys(), t0 + 59_000)).toEqual({
      allowed: false,
      reason: "installation",
      retryAt: t0 + 60_000,
    });
  });

  it("repays mints recorded without a check before allowing more, within one burst", () => {
    const limiter = new MintLimiter(only({ installation: { perMinute: 60, burst: 2 } }));
    for (let i = 0; i < 10; i++) limiter.record(keys(`ns/t${i}`), t0);
    // Two below zero at most: three refills (3 s) to hold one whole mint again.
    expect(limiter.check(keys("ns/next"), t0)).toMatchObject({ reason: "installation", retryAt: t0 + 3_000 });
  });

  it("refills nothing while the clock moves back", () => {
    const limiter = new MintLimiter(only({ installation: { perMinute: 60, burst: 1 } }));
    limiter.record(keys(), t0);
    expect(limiter.check(keys(), t0 - 10_000)).toMatchObject({ allowed: false, retryAt: t0 - 9_000 });
  });
});

describe("MintLimiter: bounded memory", () => {
  it("drops buckets that are full again and intervals that have passed", () => {
    const limiter = new MintLimiter({
      installation: { perMinute: 60, burst: 5 },
      app: { perMinute: 60, burst: 5 },
    });
    limiter.record(keys(), t0);
    expect(limiter.sizes).toEqual({ tokens: 1, installations: 1, apps: 1 });
    limiter.prune(t0 + 999);
    expect(limiter.sizes).toEqual({ tokens: 1, installations: 1, apps: 1 });
    limiter.prune(t0 + 60_000);
    expect(limiter.sizes).toEqual({ tokens: 0, installations: 0, apps: 0 });
  });

  it("never remembers more than maxEntries keys, dropping the least recently used", () => {
    const limiter = new MintLimiter({ maxEntries: 100 });
    for (let i = 0; i < 1_000; i++) limiter.record(keys(`ns/t${i}`, `app-a#${i}`, `app-${i}`), t0 + i);
    const sizes = limiter.sizes;
    expect(sizes.tokens).toBeLessThanOrEqual(100);
    expect(sizes.installations).toBeLessThanOrEqual(100);
    expect(sizes.apps).toBeLessThanOrEqual(100);
    expect(limiter.check(keys("ns/t999", "x", "y"), t0 + 1_000).allowed).toBe(false);
  });

  it.each<[string, MintLimitsInput]>([
    ["a negative interval", { tokenIntervalMs: -1 }],
    ["a rate of zero", { installation: { perMinute: 0 } }],
    ["an infinite rate", { app: { perMinute: Number.POSITIVE_INFINITY } }],
    ["a burst below one", { app: { burst: 0.5 } }],
    ["NaN", { installation: { burst: Number.NaN } }],
    ["no room for keys", { maxEntries: 0 }],
  ])("refuses %s with a readable message", (_what, input) => {
    expect(() => new MintLimiter(input)).toThrow(/invalid mint limits: .* must be/);
  });
});

describe("arrivedUnusable", () => {
  const min = 10 * 60_000;
  it.each([
    ["a fresh hour-long token", t0 + 3_600_000, false],
    ["exactly the minimum left", t0 + min, false],
    ["just under the minimum", t0 + min - 1, true],
    ["already expired", t0 - 1, true],
    ["an expiry that is not a number", Number.NaN, true],
  ])("%s: %s", (_what, expiresAt, unusable) => {
    expect(arrivedUnusable(expiresAt, t0, min)).toBe(unusable);
  });
});

describe("throttle reasons", () => {
  it("are a closed list, each with a readable message", () => {
    expect(throttleReasons).toEqual(["token-interval", "installation", "app"]);
    for (const reason of throttleReasons) {
      expect(throttleMessage({ reason, retryAt: t0 })).toMatch(
        /^mint held back until 2026-11-24T12:00:00.000Z: /,
      );
    }
  });
});

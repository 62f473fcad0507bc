import { describe, expect, it } from "vitest";
import {
  jitterFraction,
  maxRetryMs,
  refreshTime,
  retryCap,
  retryTime,
  stableJitter,
} from "../../../src/core/schedule.ts";

const min = 60_000;
const t0 = Date.parse("2026-11-24T12:00:00Z");

describe("refreshTime", () => {
  const base = {
    issuedAt: t0,
    expiresAt: t0 + 60 * min,
    refreshBeforeMs: 20 * min,
    minRemainingMs: 10 * min,
  };

  it("refreshes refreshBefore ahead of GitHub's expires_at when jitter is zero", () => {
    expect(refreshTime({ ...base, jitter: 0 })).toBe(t0 + 40 * min);
  });

  it("moves the refresh earlier, never later, by at most 10% of the window", () => {
    const latest = refreshTime({ ...base, jitter: 0 });
    const earliest = refreshTime({ ...base, jitter: 0.999999 });
    expect(earliest).toBeLessThan(latest);
    expect(latest - earliest).toBeLessThanOrEqual(40 * min * jitterFraction);
  });

  it("follows expires_at, not a fixed interval: a shorter-lived token refreshes sooner", () => {
    expect(refreshTime({ ...base, expiresAt: t0 + 30 * min, jitter: 0 })).toBe(t0 + 10 * min);
  });

  it("keeps the minimum remaining lifetime when GitHub's lifetime is shorter than refreshBefore", () => {
    const at = refreshTime({
      ...base,
      expiresAt: t0 + 60_000,
      refreshBeforeMs: 20 * min,
      minRemainingMs: 10_000,
      jitter: 0.5,
    });
    expect(at).toBeGreaterThan(t0);
    expect(t0 + 60_000 - at).toBeGreaterThan(10_000);
  });
});

describe("stableJitter", () => {
  it("gives the same value for the same seed and spreads different seeds over [0, 1)", () => {
    expect(stableJitter("ns/a")).toBe(stableJitter("ns/a"));
    const values = Array.from({ length: 1000 }, (_, i) => stableJitter(`ns/token-${i}`));
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
    expect(new Set(values.map((v) => Math.floor(v * 10))).size).toBe(10);
  });
});

describe("retryTime", () => {
  it.each([
    [1, 500, 1_000],
    [2, 1_000, 2_000],
    [5, 8_000, 16_000],
    [30, 150_000, 300_000],
  ])("after %i failures waits between %i and %i ms", (failures, lo, hi) => {
    for (const random of [0, 0.5, 0.999]) {
      const delay = retryTime({ failures, random, now: t0 }) - t0;
      expect(delay).toBeGreaterThanOrEqual(lo);
      expect(delay).toBeLessThanOrEqual(hi);
    }
  });

  it("never retries before the time GitHub asked for", () => {
    expect(retryTime({ failures: 1, random: 0, now: t0, retryAt: t0 + 90_000 })).toBe(t0 + 90_000);
  });
});

describe("retryCap", () => {
  const min = 10 * 60_000;

  it("is the usual 5 min cap while the token is far from its minimum lifetime", () => {
    expect(retryCap(40 * 60_000, min)).toBe(maxRetryMs);
  });

  it("lands every retry before the token falls below its minimum: a quarter of the headroom", () => {
    expect(retryCap(8 * 60_000, min)).toBe(2 * 60_000);
    // However many failures came before, each retry lands before the headroom runs out.
    let now = t0;
    const below = t0 + 9 * 60_000;
    for (let failures = 1; below - now > 4 * 60_000; failures++) {
      const next = retryTime({ failures, random: 0.999, now, maxMs: retryCap(below - now, min) });
      expect(next).toBeLessThan(below);
      now = next;
    }
  });

  it("keeps a floor of a tenth of the minimum lifetime (1 s to 60 s) once below it: no hot loop", () => {
    expect(retryCap(-5_000, min)).toBe(60_000);
    expect(retryCap(0, 4_000)).toBe(1_000);
    expect(retryCap(-1, 5 * 60 * 60_000)).toBe(60_000);
  });
});

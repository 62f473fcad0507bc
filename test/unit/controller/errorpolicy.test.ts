import { describe, expect, it } from "vitest";
import { retryAfterFailure } from "../../../src/controller/errorpolicy.ts";
import { GhatError } from "../../../src/core/errors.ts";

const now = Date.parse("2026-11-24T12:00:00Z");
const base = { failures: 1, random: 0.5, now, terminalRetryMs: 15 * 60_000 };

describe("retryAfterFailure", () => {
  it.each([
    ["a spec-side error waits for a change", new GhatError("InvalidSpec", "x"), undefined, undefined],
    [
      "a GitHub-side terminal error retries slowly",
      new GhatError("InstallationNotFound", "x"),
      undefined,
      now + 15 * 60_000,
    ],
    ["a bug retries slowly", new GhatError("InternalError", "x"), undefined, now + 15 * 60_000],
    [
      "a rate limit waits for its reset",
      new GhatError("RateLimited", "x", { retryAt: now + 90_000 }),
      undefined,
      now + 90_000,
    ],
  ])("%s", (_what, error, held, expected) => {
    expect(retryAfterFailure({ ...base, error, held, minRemainingMs: 600_000 })).toBe(expected);
  });

  it("retries an outage at the floor's pace when nothing usable is held", () => {
    const at = retryAfterFailure({
      ...base,
      failures: 20,
      error: new GhatError("GitHubUnavailable", "503"),
      held: undefined,
      minRemainingMs: 10_000,
    });
    expect((at ?? 0) - now).toBeLessThanOrEqual(1_000);
  });

  it("backs a server that answers nonsense off exponentially, whatever the minimum lifetime", () => {
    const at = retryAfterFailure({
      ...base,
      failures: 20,
      error: new GhatError("InvalidResponse", "bad"),
      held: undefined,
      minRemainingMs: 1_000,
    });
    expect((at ?? 0) - now).toBeGreaterThanOrEqual(150_000);
  });

  // The soak's failure: GitHub came back, the next retry (jittered, up to 1 s) bounced off
  // the token's own mint interval, which ended 250 ms later, and backoff put the retry after
  // it at up to 1 s more: the Secret dipped below its minimum lifetime.
  it("retries ghat's own per-token interval when it ends, not later by backoff", () => {
    const nearMinimum = { expiresAt: now + 6_500 };
    const at = retryAfterFailure({
      ...base,
      failures: 9,
      random: 0.999,
      error: new GhatError("Throttled", "interval", { retryAt: now + 250, exact: true }),
      held: nearMinimum,
      minRemainingMs: 6_000,
    });
    expect(at).toBe(now + 250);
    // The same wait on a shared bucket keeps its backoff: the tokens behind it spread out.
    const shared = retryAfterFailure({
      ...base,
      failures: 9,
      random: 0.999,
      error: new GhatError("Throttled", "bucket", { retryAt: now + 250 }),
      held: nearMinimum,
      minRemainingMs: 6_000,
    });
    expect(shared).toBeGreaterThan(now + 900);
  });

  it("never schedules an exact wait that has already ended in the past", () => {
    const at = retryAfterFailure({
      ...base,
      error: new GhatError("Throttled", "interval", { retryAt: now - 5, exact: true }),
      held: undefined,
      minRemainingMs: 6_000,
    });
    expect(at).toBe(now);
  });
});

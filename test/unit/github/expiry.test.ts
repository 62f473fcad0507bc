import { describe, expect, it } from "vitest";
import {
  acceptedExpiry,
  localExpiry,
  maxTokenLifetimeMs,
  minTokenLifetimeMs,
} from "../../../src/github/client.ts";

describe("localExpiry: expires_at moved onto the cluster's clock", () => {
  const now = Date.parse("2026-11-24T12:00:00.400Z");
  const expires = Date.parse("2026-11-24T13:00:00Z");

  it("keeps GitHub's value when the clocks agree or there is no Date", () => {
    expect(localExpiry(expires, "Tue, 24 Nov 2026 12:00:00 GMT", now)).toBe(expires);
    expect(localExpiry(expires, null, now)).toBe(expires);
    expect(localExpiry(expires, "not a date", now)).toBe(expires);
  });

  it("moves it later by the skew, less a second, when GitHub is behind (else it looks expired on arrival)", () => {
    // GitHub 5 min behind: its token lives 1 h on its clock, so 1 h on ours too.
    expect(localExpiry(expires, "Tue, 24 Nov 2026 11:55:00 GMT", now)).toBe(expires + 5 * 60_000 - 1_000);
  });

  it("moves it earlier by at least the skew when GitHub is ahead", () => {
    const got = localExpiry(expires, "Tue, 24 Nov 2026 12:05:00 GMT", now);
    expect(got).toBeLessThanOrEqual(expires - 300_000);
    expect(got).toBeGreaterThanOrEqual(expires - 302_000);
    expect(got % 1000).toBe(0);
  });
});

describe("acceptedExpiry: only 1 minute to 24 hours after GitHub's Date", () => {
  const date = "Tue, 24 Nov 2026 12:00:00 GMT";
  const githubNow = Date.parse(date);
  const localNow = Date.parse("2026-11-24T10:00:00Z");
  const at = (ms: number) => new Date(ms).toISOString();

  it("uses the window ghat documents", () => {
    expect(minTokenLifetimeMs).toBe(60_000);
    expect(maxTokenLifetimeMs).toBe(86_400_000);
  });

  it.each<[string, string, string | null, boolean]>([
    ["GitHub's one hour", at(githubNow + 3_600_000), date, true],
    ["exactly 1 minute", at(githubNow + 60_000), date, true],
    ["exactly 24 hours", at(githubNow + 86_400_000), date, true],
    ["59 seconds", at(githubNow + 59_000), date, false],
    ["2 seconds", at(githubNow + 2_000), date, false],
    ["the past", at(githubNow - 1_000), date, false],
    ["24 hours and a second", at(githubNow + 86_401_000), date, false],
    ["the year 9999", "9999-12-31T23:59:59Z", date, false],
    ["one hour after the local clock, without a Date header", at(localNow + 3_600_000), null, true],
    ["one hour after the local clock, with an unreadable Date", at(localNow + 3_600_000), "soon", true],
    ["two seconds after the local clock, without a Date header", at(localNow + 2_000), null, false],
  ])("expires_at %s → accepted: %s", (_case, expiresAt, dateHeader, accepted) => {
    const accept = () => acceptedExpiry(expiresAt, dateHeader, localNow);
    if (accepted) {
      expect(accept()).toBe(Date.parse(expiresAt));
    } else {
      expect(accept).toThrow(
        expect.objectContaining({
          code: "InvalidResponse",
          message: expect.stringContaining(`GitHub answered expires_at ${expiresAt}, outside 1m–24h after`),
        }),
      );
    }
  });

  it("names the Date header it measured from, or the local clock", () => {
    const message = (dateHeader: string | null) => {
      try {
        acceptedExpiry("9999-12-31T23:59:59Z", dateHeader, localNow);
      } catch (err) {
        return (err as Error).message;
      }
      return "";
    };
    expect(message(date)).toContain("after its Date header (2026-11-24T12:00:00.000Z)");
    expect(message(null)).toContain("after this machine's clock (no Date header) (2026-11-24T10:00:00.000Z)");
  });
});

import { describe, expect, it } from "vitest";
import { localExpiry } from "../../../src/github/client.ts";

describe("localExpiry: expires_at moved onto the cluster's clock", () => {
  const now = Date.parse("2026-11-24T12:00:00.400Z");
  const expires = Date.parse("2026-11-24T13:00:00Z");

  it("keeps GitHub's value when the clocks agree or GitHub is behind", () => {
    expect(localExpiry(expires, "Tue, 24 Nov 2026 12:00:00 GMT", now)).toBe(expires);
    expect(localExpiry(expires, "Tue, 24 Nov 2026 11:55:00 GMT", now)).toBe(expires);
    expect(localExpiry(expires, null, now)).toBe(expires);
    expect(localExpiry(expires, "not a date", now)).toBe(expires);
  });

  it("moves it earlier by at least the skew when GitHub is ahead", () => {
    const got = localExpiry(expires, "Tue, 24 Nov 2026 12:05:00 GMT", now);
    expect(got).toBeLessThanOrEqual(expires - 300_000);
    expect(got).toBeGreaterThanOrEqual(expires - 302_000);
    expect(got % 1000).toBe(0);
  });
});

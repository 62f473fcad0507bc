import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TokenFactory } from "../../src/sim/tokens.ts";

const factory = new TokenFactory();
const claims = fc.record({
  appId: fc.integer({ min: 1, max: 99_999_999 }),
  installationId: fc.integer({ min: 1, max: 999_999_999 }),
  issuedAt: fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 }),
});

describe("token values", () => {
  it("classic: ghs_ and 36 alphanumerics", () => {
    const token = factory.make("classic", { appId: 1, installationId: 2, issuedAt: 0, expiresAt: 3600_000 });
    expect(token).toMatch(/^ghs_[A-Za-z0-9]{36}$/);
  });

  it("stateless: ghs_<appid>_<jwt> of about 520 characters that fits GitHub's recommended pattern", () => {
    fc.assert(
      fc.property(claims, ({ appId, installationId, issuedAt }) => {
        const token = factory.make("stateless", {
          appId,
          installationId,
          issuedAt,
          expiresAt: issuedAt + 3600_000,
        });
        expect(token.startsWith(`ghs_${appId}_`)).toBe(true);
        expect(token).toMatch(/^ghs_[A-Za-z0-9._]{36,}$/);
        expect(Math.abs(token.length - 520)).toBeLessThanOrEqual(2);
        const [header = "", payload = ""] = token.slice(`ghs_${appId}_`.length).split(".");
        expect(JSON.parse(Buffer.from(header, "base64url").toString())).toEqual({ alg: "ES256", typ: "JWT" });
        expect(JSON.parse(Buffer.from(payload, "base64url").toString())).toMatchObject({
          exp: Math.floor(issuedAt / 1000) + 3600,
        });
      }),
      { numRuns: 50 },
    );
  });

  it("never repeats", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      seen.add(
        factory.make(i % 2 ? "classic" : "stateless", {
          appId: 1,
          installationId: 1,
          issuedAt: 0,
          expiresAt: 1,
        }),
      );
    }
    expect(seen.size).toBe(200);
  });
});

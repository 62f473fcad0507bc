import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { decodeProtectedHeader, jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { signAppJwt } from "../../../src/github/jwt.ts";
import { testKeyPair } from "./fakegithub.ts";

const { privateKey, publicKey } = testKeyPair();
const now = Date.parse("2026-11-24T12:00:00.750Z");
const nowSeconds = Math.floor(now / 1000);

async function claims(jwt: string, atMs: number) {
  const { payload } = await jwtVerify(jwt, publicKey, { algorithms: ["RS256"], currentDate: new Date(atMs) });
  return payload;
}

describe("signAppJwt", () => {
  it("signs RS256 with iat 60 s back and exp 540 s ahead, in integer seconds", async () => {
    const jwt = await signAppJwt({ key: privateKey, issuer: 12345, nowMs: now, offsetMs: 0 });
    expect(decodeProtectedHeader(jwt)).toEqual({ alg: "RS256", typ: "JWT" });
    expect(await claims(jwt, now)).toEqual({ iat: nowSeconds - 60, exp: nowSeconds + 540, iss: 12345 });
  });

  it.each<[string, string | number, string]>([
    ["a numeric App id as a JSON number", 12345, "number"],
    ["a client id as a string", "Iv23liAbCdEf", "string"],
  ])("sets iss to %s", async (_case, issuer, type) => {
    const jwt = await signAppJwt({ key: privateKey, issuer, nowMs: now, offsetMs: 0 });
    const { iss } = await claims(jwt, now);
    expect(iss).toBe(issuer);
    expect(typeof iss).toBe(type);
  });

  it.each([
    ["ahead", 7 * 60_000],
    ["behind", -4 * 60_000 - 500],
  ])("puts both claims on GitHub's clock when it is %s of ours", async (_case, offsetMs) => {
    const jwt = await signAppJwt({ key: privateKey, issuer: 1, nowMs: now, offsetMs });
    const github = Math.floor((now + offsetMs) / 1000);
    expect(await claims(jwt, now + offsetMs)).toMatchObject({ iat: github - 60, exp: github + 540 });
  });

  it("stays inside GitHub's 600 s window even when our clock is 59 s fast", async () => {
    const jwt = await signAppJwt({ key: privateKey, issuer: 1, nowMs: now + 59_000, offsetMs: 0 });
    const { iat, exp } = await claims(jwt, now);
    expect(exp).toBeLessThanOrEqual(nowSeconds + 600);
    expect(iat).toBeLessThanOrEqual(nowSeconds);
  });
});

describe("a key that parses but cannot sign", () => {
  it("is an InvalidPrivateKey with OpenSSL's reason and none of its material", async () => {
    const jwk = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
    const n = Buffer.from(String(jwk.n), "base64url");
    n[n.length - 1] = (n[n.length - 1] ?? 0) & 0xfe; // an even modulus: no inverse for blinding
    const key = createPrivateKey({ key: { ...jwk, n: n.toString("base64url") }, format: "jwk" });
    const err = await signAppJwt({ key, issuer: 1, nowMs: 0, offsetMs: 0 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "InvalidPrivateKey" });
    expect((err as Error).message).toContain("could not sign the App's JWT (no inverse)");
    expect((err as Error).message).not.toContain(String(jwk.d).slice(0, 20));
  });
});

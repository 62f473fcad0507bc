import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { appId, clientId, keys, messageOf, otherKeys, startTestSim, type TestSim } from "./helpers.ts";

const decode = "A JSON web token could not be decoded";
const expInvalid =
  "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires";
const expTooFar = "'Expiration time' claim ('exp') is too far in the future";
const iatInvalid =
  "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued";

let t: TestSim;
beforeAll(async () => {
  t = await startTestSim();
});
afterAll(() => t.close());

describe("the App's JWT is checked in GitHub's order, with GitHub's statuses and messages", () => {
  const now = () => t.nowS();
  it.each<[string, () => string | undefined, number, string]>([
    ["a missing Authorization header", () => undefined, 401, decode],
    ["a Bearer value that is not a JWT", () => "Bearer not-a-jwt", 401, decode],
    ["a JWT whose claims are not JSON", () => "Bearer eyJhbGciOiJSUzI1NiJ9.bm9wZQ.c2ln", 401, decode],
    ["a JWT whose claims are null", () => "Bearer eyJhbGciOiJSUzI1NiJ9.bnVsbA.c2ln", 401, decode],
    [
      "an installation token instead of a JWT",
      () => "Bearer ghs_abcdefghijklmnopqrstuvwxyz0123456789",
      401,
      decode,
    ],
    [
      "a JWT with alg HS256",
      () => t.bearer({ iss: appId, iat: now() - 60, exp: now() + 500 }, { alg: "HS256" }),
      401,
      decode,
    ],
    [
      "a JWT with alg none",
      () => t.bearer({ iss: appId, iat: now() - 60, exp: now() + 500 }, { alg: "none", sign: false }),
      401,
      decode,
    ],
    [
      "an unsigned JWT",
      () => t.bearer({ iss: appId, iat: now() - 60, exp: now() + 500 }, { sign: false }),
      401,
      decode,
    ],
    [
      "a JWT signed by a key that is not the App's",
      () =>
        t.bearer({ iss: appId, iat: now() - 60, exp: now() + 500 }, { pem: otherKeys.privateKeyPkcs1Pem }),
      401,
      decode,
    ],
    [
      "an unknown numeric issuer",
      () => t.bearer({ iss: 999, iat: now() - 60, exp: now() + 500 }),
      404,
      "Integration not found",
    ],
    [
      "an unknown client id as issuer",
      () => t.bearer({ iss: "Iv23liNobody", iat: now() - 60, exp: now() + 500 }),
      404,
      "Integration not found",
    ],
    ["no issuer", () => t.bearer({ iat: now() - 60, exp: now() + 500 }), 404, "Integration not found"],
    ["a missing exp", () => t.bearer({ iss: appId, iat: now() - 60 }), 401, expInvalid],
    [
      "an exp that is not numeric",
      () => t.bearer({ iss: appId, iat: now() - 60, exp: "soon" }),
      401,
      expInvalid,
    ],
    [
      "an exp in the past",
      () => t.bearer({ iss: appId, iat: now() - 700, exp: now() - 10 }),
      401,
      expInvalid,
    ],
    ["an exp of exactly now", () => t.bearer({ iss: appId, iat: now() - 60, exp: now() }), 401, expInvalid],
    ["an exp 601 s ahead", () => t.bearer({ iss: appId, iat: now() - 60, exp: now() + 601 }), 401, expTooFar],
    ["a missing iat", () => t.bearer({ iss: appId, exp: now() + 500 }), 401, iatInvalid],
    [
      "an iat that is not an integer",
      () => t.bearer({ iss: appId, iat: now() - 0.5, exp: now() + 500 }),
      401,
      iatInvalid,
    ],
    [
      "an iat that is a string",
      () => t.bearer({ iss: appId, iat: String(now() - 60), exp: now() + 500 }),
      401,
      iatInvalid,
    ],
    [
      "an iat one second in the future",
      () => t.bearer({ iss: appId, iat: now() + 1, exp: now() + 500 }),
      401,
      iatInvalid,
    ],
  ])("%s → %i", async (_case, auth, status, message) => {
    const a = auth();
    const r = await t.call("GET", "/app", a ? { auth: a } : {});
    expect(r.status).toBe(status);
    expect(r.body).toEqual({
      message,
      documentation_url: expect.stringMatching(/^https:\/\/docs\.github\.com\//),
      status: String(status),
    });
  });

  it.each([
    ["an unknown issuer wins over a bad signature", { iss: 999 }, otherKeys.privateKeyPkcs1Pem, 404],
    [
      "a bad signature wins over an expired exp",
      { iss: appId, exp: 1, iat: 0 },
      otherKeys.privateKeyPkcs1Pem,
      401,
    ],
  ])("%s", async (_case, claims, pem, status) => {
    const r = await t.call("GET", "/app", { auth: t.bearer(claims, { pem }) });
    expect(r.status).toBe(status);
    if (status === 401) expect(messageOf(r)).toBe(decode);
  });

  it("checks exp before iat", async () => {
    const r = await t.call("GET", "/app", {
      auth: t.bearer({ iss: appId, iat: t.nowS() + 100, exp: t.nowS() - 1 }),
    });
    expect(messageOf(r)).toBe(expInvalid);
  });

  it("accepts exp exactly 600 s ahead and iat exactly now", async () => {
    const r = await t.call("GET", "/app", {
      auth: t.bearer({ iss: appId, iat: t.nowS(), exp: t.nowS() + 600 }),
    });
    expect(r.status).toBe(200);
  });

  it("accepts the client id as issuer, and the numeric App id as a number or a string", async () => {
    for (const iss of [clientId, appId, String(appId)]) {
      const r = await t.call("GET", "/app", {
        auth: t.bearer({ iss, iat: t.nowS() - 60, exp: t.nowS() + 540 }),
      });
      expect(r.status, String(iss)).toBe(200);
    }
  });

  it("answers the same errors on every JWT route", async () => {
    for (const [method, path] of [
      ["GET", "/app"],
      ["GET", "/app/installations"],
      ["GET", "/app/installations/1"],
      ["GET", "/orgs/acme/installation"],
      ["GET", "/users/octocat/installation"],
      ["GET", "/repos/acme/app/installation"],
      ["POST", "/app/installations/1/access_tokens"],
    ] as const) {
      const r = await t.call(method, path);
      expect([r.status, messageOf(r)], `${method} ${path}`).toEqual([401, decode]);
    }
  });
});

describe("time, judged on the simulator's clock", () => {
  it("refuses a JWT from a client whose clock is ahead, with a Date header that lets it correct", async () => {
    // GitHub 5 minutes behind the client: the client's exp (now + 540 s) is 840 s ahead of GitHub.
    t.sim.setClockOffset(-5 * 60_000);
    try {
      const r = await t.call("GET", "/app", { auth: t.bearer() });
      expect([r.status, messageOf(r)]).toEqual([401, expTooFar]);
      const githubNow = Date.parse(r.headers.get("date") ?? "");
      expect(githubNow).toBe(t.clock.now() - 5 * 60_000);
      const skew = Math.floor(githubNow / 1000) - t.nowS();
      const corrected = t.bearer({ iss: appId, iat: t.nowS() + skew - 60, exp: t.nowS() + skew + 540 });
      expect((await t.call("GET", "/app", { auth: corrected })).status).toBe(200);
    } finally {
      t.sim.setClockOffset(0);
    }
  });

  it("refuses a JWT from a client whose clock is behind, by its iat", async () => {
    t.sim.setClockOffset(-2 * 60_000);
    try {
      const r = await t.call("GET", "/app", {
        auth: t.bearer({ iss: appId, iat: t.nowS() - 30, exp: t.nowS() + 300 }),
      });
      expect([r.status, messageOf(r)]).toEqual([401, iatInvalid]);
    } finally {
      t.sim.setClockOffset(0);
    }
  });

  it("follows the injected clock as it moves", async () => {
    const auth = t.bearer();
    expect((await t.call("GET", "/app", { auth })).status).toBe(200);
    t.clock.advance(541_000);
    expect(messageOf(await t.call("GET", "/app", { auth }))).toBe(expInvalid);
  });

  it("allows a future iat within iatLeewaySeconds when configured", async () => {
    const lenient = await startTestSim({ iatLeewaySeconds: 60 });
    try {
      const n = lenient.nowS();
      expect(
        (
          await lenient.call("GET", "/app", {
            auth: lenient.bearer({ iss: appId, iat: n + 60, exp: n + 500 }),
          })
        ).status,
      ).toBe(200);
      expect(
        (
          await lenient.call("GET", "/app", {
            auth: lenient.bearer({ iss: appId, iat: n + 61, exp: n + 500 }),
          })
        ).status,
      ).toBe(401);
    } finally {
      await lenient.close();
    }
  });
});

describe("App keys", () => {
  it("accepts a JWT signed by any of the App's keys, and refuses a replaced one", async () => {
    const next = generateAppKeyPair();
    const signedBy = (pem: string) =>
      t.bearer({ iss: appId, iat: t.nowS() - 60, exp: t.nowS() + 540 }, { pem });
    expect((await t.call("GET", "/app", { auth: signedBy(next.privateKeyPkcs8Pem) })).status).toBe(401);
    t.sim.state.addAppPublicKey(appId, next.publicKeyPem);
    expect((await t.call("GET", "/app", { auth: signedBy(next.privateKeyPkcs8Pem) })).status).toBe(200);
    expect((await t.call("GET", "/app", { auth: signedBy(keys.privateKeyPkcs1Pem) })).status).toBe(200);
    t.sim.state.replaceAppPublicKeys(appId, [next.publicKeyPem]);
    const old = await t.call("GET", "/app", { auth: signedBy(keys.privateKeyPkcs1Pem) });
    expect([old.status, messageOf(old)]).toEqual([401, decode]);
    t.sim.state.replaceAppPublicKeys(appId, [keys.publicKeyPem]);
  });

  it("takes only the numeric App id as issuer when the client id is not accepted (Enterprise Server before 3.14)", async () => {
    const old = await startTestSim({ enterprise: true, clientIdIssuer: false });
    try {
      const n = old.nowS();
      const byClientId = await old.call("GET", "/api/v3/app", {
        auth: old.bearer({ iss: clientId, iat: n - 60, exp: n + 500 }),
      });
      expect([byClientId.status, messageOf(byClientId)]).toEqual([404, "Integration not found"]);
      expect((await old.call("GET", "/api/v3/app", { auth: old.bearer() })).status).toBe(200);
    } finally {
      await old.close();
    }
  });
});

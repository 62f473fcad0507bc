import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Simulator } from "../../src/sim/simulator.ts";
import { appId, call, clientId, jwt, keys, mint, otherKeys, startSim, validJwt } from "./helpers.ts";

let sim: Simulator;
beforeAll(async () => {
  sim = await startSim();
});
afterAll(() => sim.close());

const now = () => Math.floor(Date.now() / 1000);
const decode = "A JSON web token could not be decoded";

describe("the App's JWT, checked in GitHub's order with GitHub's messages", () => {
  it.each<[string, () => string | undefined, number, string]>([
    ["missing", () => undefined, 401, decode],
    ["not a JWT", () => "Bearer not-a-jwt", 401, decode],
    [
      "alg HS256",
      () => `Bearer ${jwt({ iss: appId, iat: now() - 60, exp: now() + 500 }, { alg: "HS256" })}`,
      401,
      decode,
    ],
    [
      "unsigned",
      () => `Bearer ${jwt({ iss: appId, iat: now() - 60, exp: now() + 500 }, { sign: false })}`,
      401,
      decode,
    ],
    [
      "signed by another key",
      () => `Bearer ${validJwt(now(), appId, otherKeys.privateKeyPkcs1Pem)}`,
      401,
      decode,
    ],
    ["unknown iss", () => `Bearer ${validJwt(now(), 999)}`, 404, "Integration not found"],
    [
      "exp missing",
      () => `Bearer ${jwt({ iss: appId, iat: now() - 60 })}`,
      401,
      "'Expiration time' claim ('exp') must be a numeric value",
    ],
    [
      "exp not numeric",
      () => `Bearer ${jwt({ iss: appId, iat: now() - 60, exp: "soon" })}`,
      401,
      "'Expiration time' claim ('exp') must be a numeric value",
    ],
    [
      "exp in the past",
      () => `Bearer ${jwt({ iss: appId, iat: now() - 700, exp: now() - 10 })}`,
      401,
      "must be a numeric value representing the future time",
    ],
    [
      "exp too far",
      () => `Bearer ${jwt({ iss: appId, iat: now() - 60, exp: now() + 700 })}`,
      401,
      "'Expiration time' claim ('exp') is too far in the future",
    ],
    [
      "iat missing",
      () => `Bearer ${jwt({ iss: appId, exp: now() + 500 })}`,
      401,
      "'Issued at' claim ('iat') must be an Integer",
    ],
    [
      "iat not an integer",
      () => `Bearer ${jwt({ iss: appId, iat: now() - 0.5, exp: now() + 500 })}`,
      401,
      "'Issued at' claim ('iat') must be an Integer",
    ],
    [
      "iat in the future",
      () => `Bearer ${jwt({ iss: appId, iat: now() + 120, exp: now() + 500 })}`,
      401,
      "'Issued at' claim ('iat') must be an Integer",
    ],
  ])("%s → %i", async (_case, auth, status, message) => {
    const a = auth();
    const r = await call(sim, "GET", "/app", a ? { auth: a } : {});
    expect(r.status).toBe(status);
    expect(r.body).toMatchObject({ status: String(status), documentation_url: expect.any(String) });
    expect((r.body as { message: string }).message).toContain(message);
  });

  it("accepts the client id as issuer, and the numeric id as a string", async () => {
    expect((await call(sim, "GET", "/app", { auth: `Bearer ${validJwt(now(), clientId)}` })).status).toBe(
      200,
    );
    expect(
      (await call(sim, "GET", "/app", { auth: `Bearer ${validJwt(now(), String(appId))}` })).status,
    ).toBe(200);
  });

  it("judges time on its own clock, shifted by the injected offset", async () => {
    // GitHub 5 minutes behind us: our exp (now + 540 s) is more than 600 s ahead of GitHub.
    sim.setClockOffset(-5 * 60_000);
    try {
      const r = await call(sim, "GET", "/app", { auth: `Bearer ${validJwt()}` });
      expect(r).toMatchObject({
        status: 401,
        body: { message: expect.stringContaining("too far in the future") },
      });
      expect(Date.now() - Date.parse(r.headers.get("date") ?? "")).toBeGreaterThan(4 * 60_000);
    } finally {
      sim.setClockOffset(0);
    }
  });

  it("accepts any of the App's keys (rotation)", async () => {
    const app = sim.state.apps.get(appId);
    if (!app) throw new Error("seed");
    app.publicKeys = [...app.publicKeys, otherKeys.publicKeyPem];
    expect(
      (
        await call(sim, "GET", "/app", {
          auth: `Bearer ${validJwt(now(), appId, otherKeys.privateKeyPkcs1Pem)}`,
        })
      ).status,
    ).toBe(200);
    app.publicKeys = [keys.publicKeyPem];
  });
});

describe("minting, with GitHub's answers", () => {
  it.each<[string, number, unknown, number, string]>([
    ["an installation that does not exist", 77, undefined, 404, "Not Found"],
    ["another App's installation", 3, undefined, 404, "Not Found"],
    ["a suspended installation", 4, undefined, 403, "This installation has been suspended"],
    [
      "a permission the installation lacks",
      1,
      { permissions: { administration: "read" } },
      422,
      "The permissions requested are not granted to this installation.",
    ],
    [
      "an unknown permission",
      1,
      { permissions: { teleport: "read" } },
      422,
      "The permissions requested are not granted to this installation.",
    ],
    [
      "a level above the grant",
      1,
      { permissions: { issues: "write" } },
      422,
      "The level of access for permissions requested are not granted to this installation.",
    ],
    [
      "a repository outside the selection",
      1,
      { repositories: ["not-selected"] },
      422,
      "There is at least one repository that does not exist or is not accessible to the parent installation.",
    ],
    [
      "a repository that does not exist",
      1,
      { repositories: ["nope"] },
      422,
      "There is at least one repository that does not exist",
    ],
    [
      "a repository id of another owner",
      1,
      { repository_ids: [21] },
      422,
      "There is at least one repository that does not exist",
    ],
    [
      "more than 500 repositories",
      1,
      { repositories: Array.from({ length: 501 }, (_, i) => `r${i}`) },
      422,
      "500",
    ],
    ["a body of the wrong type", 1, { permissions: ["contents"] }, 400, "Problems parsing JSON"],
  ])("%s → %i", async (_case, id, body, status, message) => {
    const r = await mint(sim, id, body);
    expect(r.status).toBe(status);
    expect((r.body as { message: string }).message).toContain(message);
  });

  it("answers 400 to a body that is not JSON", async () => {
    const r = await call(sim, "POST", "/app/installations/1/access_tokens", {
      auth: `Bearer ${validJwt()}`,
      raw: "{nope",
    });
    expect(r).toMatchObject({ status: 400, body: { message: "Problems parsing JSON" } });
  });

  it("gives a token for exactly what was asked, expiring one hour later to the second", async () => {
    const before = Date.now();
    const r = await mint(sim, 1, { permissions: { contents: "read" }, repositories: ["app"] });
    expect(r.status).toBe(201);
    const body = r.body as {
      token: string;
      expires_at: string;
      permissions: unknown;
      repositories: { full_name: string }[];
      repository_selection: string;
    };
    expect(body.token).toMatch(/^ghs_[A-Za-z0-9]{36}$/);
    expect(body.expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Date.parse(body.expires_at) - Math.floor(before / 1000) * 1000).toBeGreaterThanOrEqual(3600_000);
    expect(Date.parse(body.expires_at) - before).toBeLessThanOrEqual(3601_000);
    expect(body.permissions).toEqual({ contents: "read" });
    expect(body.repository_selection).toBe("selected");
    expect(body.repositories.map((x) => x.full_name)).toEqual(["acme/app"]);
    expect(sim.checkToken(body.token, "acme/app").live).toBe(true);
    expect(sim.checkToken(body.token, "acme/lib")).toMatchObject({
      live: false,
      reason: "no access to acme/lib",
    });
  });

  it("gives every permission and repository of the installation when the body is empty, without a repositories field", async () => {
    const r = await mint(sim, 1);
    expect(r.body).toMatchObject({
      permissions: { contents: "write", issues: "read", metadata: "read" },
      repository_selection: "selected",
    });
    expect(r.body).not.toHaveProperty("repositories");
    expect(r.headers.get("x-ratelimit-limit")).toBeNull();
  });

  it("issues the stateless format on request, long and with dots and underscores", async () => {
    const r = await mint(sim, 1, undefined, { "x-github-stateless-s2s-token": "enabled" });
    const token = (r.body as { token: string }).token;
    expect(token).toMatch(new RegExp(`^ghs_${appId}_[A-Za-z0-9._-]+$`));
    expect(token.length).toBeGreaterThanOrEqual(480);
    expect(token.length).toBeLessThanOrEqual(560);
    expect(token.split(".")).toHaveLength(3);
    expect(sim.checkToken(token).live).toBe(true);
  });

  it("answers 401 Bad credentials to an expired or revoked token", async () => {
    const token = ((await mint(sim, 2)).body as { token: string }).token;
    const auth = `token ${token}`;
    expect((await call(sim, "GET", "/installation/repositories", { auth })).status).toBe(200);
    expect((await call(sim, "DELETE", "/installation/token", { auth })).status).toBe(204);
    const after = await call(sim, "GET", "/installation/repositories", { auth });
    expect(after).toMatchObject({ status: 401, body: { message: "Bad credentials" } });
    expect(sim.checkToken(token)).toMatchObject({ live: false, reason: "revoked" });
  });
});

describe("installation lookups", () => {
  const auth = () => ({ auth: `Bearer ${validJwt()}` });
  it.each([
    ["/app/installations/1", 200],
    ["/app/installations/3", 404],
    ["/orgs/acme/installation", 200],
    ["/orgs/octocat/installation", 404],
    ["/users/octocat/installation", 200],
    ["/users/ACME/installation", 200],
    ["/repos/acme/app/installation", 200],
    ["/repos/acme/not-selected/installation", 404],
    ["/repos/nobody/nothing/installation", 404],
    ["/api/v3/orgs/acme/installation", 200],
  ])("GET %s → %i", async (path, status) => {
    expect((await call(sim, "GET", path, auth())).status).toBe(status);
  });

  it("pages installations and sends Link only when there is more than one page", async () => {
    const one = await call(sim, "GET", "/app/installations", auth());
    expect((one.body as unknown[]).length).toBe(3);
    expect(one.headers.get("link")).toBeNull();
    const page1 = await call(sim, "GET", "/app/installations?per_page=2", auth());
    expect((page1.body as unknown[]).length).toBe(2);
    expect(page1.headers.get("link")).toContain('rel="next"');
    expect(page1.headers.get("link")).toContain("page=2");
    const page2 = await call(sim, "GET", "/app/installations?per_page=2&page=2", auth());
    expect((page2.body as { id: number }[]).map((i) => i.id)).toEqual([4]);
    expect(page2.headers.get("link")).toContain('rel="prev"');
  });

  it("puts a Date header on every response, errors included", async () => {
    for (const path of ["/app", "/nowhere", "/_sim/counts"]) {
      expect((await call(sim, "GET", path)).headers.get("date")).toMatch(/GMT$/);
    }
  });
});

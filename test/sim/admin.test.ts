import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Counts } from "../../src/sim/counts.ts";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import type { TokenScope } from "../../src/sim/state.ts";
import { appId, messageOf, startTestSim, type TestSim } from "./helpers.ts";

let t: TestSim;
beforeAll(async () => {
  t = await startTestSim();
});
beforeEach(() => t.sim.resetCounts());
afterAll(() => t.close());

const op = "apps/create-installation-access-token";

describe("accounting", () => {
  it("counts GitHub calls by route, route and status, status, App and installation", async () => {
    const token = await t.token(2, { permissions: { contents: "read" } });
    await t.mint(99);
    await t.mint(3); // another App's installation: counted for App 100, which asked
    await t.call("GET", "/installation/repositories", { auth: `token ${token}` });
    await t.call("GET", "/app"); // no JWT: no App
    await t.call("GET", "/nowhere");
    const c = t.sim.counts();
    expect(c).toEqual<Counts>({
      total: 6,
      byRoute: {
        [op]: 3,
        "apps/list-repos-accessible-to-installation": 1,
        "apps/get-authenticated": 1,
        unknown: 1,
      },
      byRouteStatus: {
        [`${op} 201`]: 1,
        [`${op} 404`]: 2,
        "apps/list-repos-accessible-to-installation 200": 1,
        "apps/get-authenticated 401": 1,
        "unknown 404": 1,
      },
      byStatus: { "200": 1, "201": 1, "401": 1, "404": 3 },
      byApp: { [String(appId)]: 4 },
      byInstallation: { "2": 2, "99": 1, "3": 1 },
    });
  });

  it("never counts the admin endpoint, and reads and resets counts through it", async () => {
    await t.mint(2);
    await t.call("GET", "/_sim/tokens");
    const counts = await t.call("GET", "/_sim/counts");
    expect(counts.body).toMatchObject({ total: 1, byRoute: { [op]: 1 } });
    expect((await t.call("POST", "/_sim/counts/reset")).status).toBe(200);
    expect(t.sim.counts().total).toBe(0);
  });

  it("hands out a copy that later calls do not change", async () => {
    const before = t.sim.counts();
    await t.mint(2);
    expect(before.total).toBe(0);
  });
});

describe("tokens, seen from the simulator", () => {
  it("lists live tokens with their scope and never the token itself", async () => {
    const token = await t.token(1, { permissions: { contents: "read" }, repositories: ["app"] });
    const revoked = await t.token(2);
    await t.call("DELETE", "/installation/token", { auth: `token ${revoked}` });
    const scope = t.sim.checkToken(token).scope;
    expect(scope).toEqual<TokenScope>({
      fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/),
      appId,
      installationId: 1,
      permissions: { contents: "read" },
      repositorySelection: "selected",
      repositoryIds: [11],
      repositories: ["acme/app"],
      issuedAt: expect.stringMatching(/Z$/),
      expiresAt: expect.stringMatching(/Z$/),
      format: "classic",
    });
    expect(t.sim.liveTokens()).toContainEqual(scope);
    expect(t.sim.liveTokens().map((s) => s.fingerprint)).not.toContain(
      t.sim.checkToken(revoked).scope?.fingerprint,
    );
    const listed = await t.call("GET", "/_sim/tokens");
    expect(listed.body).toContainEqual(scope);
    expect(JSON.stringify(listed.body)).not.toContain(token);
  });

  it("checks a token for a repository through the admin endpoint", async () => {
    const token = await t.token(2);
    const check = (repository?: string) =>
      t.call("POST", "/_sim/check-token", { body: { token, ...(repository ? { repository } : {}) } });
    expect((await check("octocat/hello")).body).toMatchObject({ live: true, scope: { installationId: 2 } });
    expect((await check("acme/app")).body).toMatchObject({ live: false, reason: "no access to acme/app" });
    expect((await check("nobody/nothing/x")).body).toMatchObject({ live: false });
    const unknown = await t.call("POST", "/_sim/check-token", { body: { token: "ghs_nope" } });
    expect(unknown.body).toEqual({ live: false, reason: "unknown" });
    const revoke = await t.call("POST", "/_sim/tokens/revoke", { body: { token } });
    expect(revoke.body).toEqual({ revoked: true });
    expect(t.sim.checkToken(token).reason).toBe("revoked");
  });
});

describe("GitHub-side changes through the admin endpoint", () => {
  it("suspends, unsuspends and deletes installations", async () => {
    await t.sim.state.addInstallation({
      id: 60,
      appId,
      account: { login: "octocat", type: "User" },
      permissions: { contents: "read" },
    });
    expect((await t.call("POST", "/_sim/installations/60/suspend")).status).toBe(200);
    expect(t.sim.state.installations.get(60)?.suspendedAt).toBe(
      new Date(Math.floor(t.clock.now() / 1000) * 1000).toISOString().replace(".000Z", "Z"),
    );
    expect(messageOf(await t.mint(60))).toBe("This installation has been suspended");
    await t.call("POST", "/_sim/installations/60/unsuspend");
    expect((await t.mint(60)).status).toBe(201);
    expect((await t.call("DELETE", "/_sim/installations/60")).status).toBe(200);
    expect((await t.mint(60)).status).toBe(404);
    expect((await t.call("POST", "/_sim/installations/60/suspend")).status).toBe(404);
  });

  it("adds and replaces an App's keys, and removes Apps", async () => {
    const next = generateAppKeyPair();
    const jwt = () =>
      t.bearer({ iss: appId, iat: t.nowS() - 60, exp: t.nowS() + 500 }, { pem: next.privateKeyPkcs1Pem });
    expect((await t.call("GET", "/app", { auth: jwt() })).status).toBe(401);
    expect(
      (await t.call("POST", `/_sim/apps/${appId}/keys`, { body: { publicKey: next.publicKeyPem } })).status,
    ).toBe(200);
    expect((await t.call("GET", "/app", { auth: jwt() })).status).toBe(200);
    const old = t.sim.state.apps.get(appId)?.publicKeys[0] ?? "";
    await t.call("PUT", `/_sim/apps/${appId}/keys`, { body: { publicKeys: [old] } });
    expect((await t.call("GET", "/app", { auth: jwt() })).status).toBe(401);
    const notAKey = await t.call("POST", `/_sim/apps/${appId}/keys`, { body: { publicKey: "hello" } });
    expect([notAKey.status, messageOf(notAKey)]).toEqual([400, expect.stringContaining("PEM public key")]);
    t.sim.state.addApp({ id: 300, clientId: "Iv23liGone", slug: "gone", publicKeys: [next.publicKeyPem] });
    expect((await t.call("DELETE", "/_sim/apps/300")).status).toBe(200);
    expect(t.sim.state.apps.has(300)).toBe(false);
  });

  it("adds seed data, renames and deletes repositories", async () => {
    const seeded = await t.call("POST", "/_sim/seed", {
      body: { repositories: [{ id: 70, owner: "octocat", name: "seeded" }] },
    });
    expect(seeded.status).toBe(200);
    expect((await t.call("GET", "/repos/octocat/seeded/installation", { auth: t.bearer() })).status).toBe(
      200,
    );
    await t.call("POST", "/_sim/repositories/70/rename", { body: { name: "renamed" } });
    expect((await t.call("GET", "/repos/octocat/seeded/installation", { auth: t.bearer() })).status).toBe(
      301,
    );
    await t.call("DELETE", "/_sim/repositories/70");
    expect((await t.call("GET", "/repos/octocat/renamed/installation", { auth: t.bearer() })).status).toBe(
      404,
    );
    const bad = await t.call("POST", "/_sim/seed", { body: { installations: [{ id: 1 }] } });
    expect(bad.status).toBe(400);
    expect(messageOf(bad)).toMatch(/installations\[0\]\.appId/);
  });

  it("moves the clock and shows it", async () => {
    const moved = await t.call("POST", "/_sim/clock", { body: { offsetMs: -90_000 } });
    expect(moved.body).toEqual({ offsetMs: -90_000, now: new Date(t.clock.now() - 90_000).toISOString() });
    expect(t.sim.now()).toBe(t.clock.now() - 90_000);
    expect((await t.call("GET", "/_sim/clock")).body).toMatchObject({ offsetMs: -90_000 });
    await t.call("POST", "/_sim/clock", { body: { offsetMs: 0 } });
    expect(t.sim.now()).toBe(t.clock.now());
  });

  it("shows the world and resets rate limits", async () => {
    const state = (await t.call("GET", "/_sim/state")).body as { apps: { id: number }[] };
    expect(state.apps.map((a) => a.id)).toContain(appId);
    expect((await t.call("POST", "/_sim/rate-limits/reset")).status).toBe(200);
  });

  it.each([
    ["GET", "/_sim/nothing", undefined, 404],
    ["PUT", "/_sim/counts", undefined, 404],
    ["POST", "/_sim/check-token", "{not json", 400],
    ["POST", "/_sim/check-token", JSON.stringify({ token: 5 }), 400],
    ["POST", "/_sim/clock", JSON.stringify({ offsetMs: "soon" }), 400],
    ["POST", "/_sim/apps/999/keys", JSON.stringify({ publicKey: "x" }), 404],
    ["POST", "/_sim/repositories/999/rename", JSON.stringify({ name: "x" }), 404],
  ])("%s %s with a bad request → %i", async (method, path, raw, status) => {
    const r = await t.call(method, path, raw === undefined ? {} : { raw });
    expect(r.status).toBe(status);
    expect(messageOf(r)).not.toBe("");
  });
});

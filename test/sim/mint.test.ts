import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appId, messageOf, startTestSim, type TestSim } from "./helpers.ts";

let t: TestSim;
beforeAll(async () => {
  t = await startTestSim();
});
afterAll(() => t.close());

interface MintBody {
  token: string;
  expires_at: string;
  permissions: Record<string, string>;
  repository_selection: string;
  repositories?: { id: number; full_name: string }[];
}

describe("POST /app/installations/{id}/access_tokens refuses with GitHub's answers", () => {
  it.each<[string, number, unknown, number, string]>([
    ["an installation that does not exist", 77, undefined, 404, "Not Found"],
    ["another App's installation", 3, undefined, 404, "Not Found"],
    ["a suspended installation", 4, undefined, 403, "This installation has been suspended"],
    ["a body that is an array", 1, [], 400, "Problems parsing JSON"],
    ["a body that is a string", 1, "contents", 400, "Problems parsing JSON"],
    ["permissions that are a list", 1, { permissions: ["contents"] }, 400, "Problems parsing JSON"],
    ["repositories that are not a list", 1, { repositories: "app" }, 400, "Problems parsing JSON"],
    ["repository names that are not strings", 1, { repositories: [11] }, 400, "Problems parsing JSON"],
    ["repository ids that are strings", 1, { repository_ids: ["11"] }, 400, "Problems parsing JSON"],
    [
      "a permission the installation lacks",
      1,
      { permissions: { pull_requests: "read" } },
      422,
      "The permissions requested are not granted to this installation.",
    ],
    [
      "a permission name GitHub does not know",
      1,
      { permissions: { teleport: "read" } },
      422,
      "The permissions requested are not granted to this installation.",
    ],
    [
      "a level that does not exist",
      1,
      { permissions: { contents: "superuser" } },
      422,
      "The permissions requested are not granted to this installation.",
    ],
    [
      "write where the grant is read",
      1,
      { permissions: { issues: "write" } },
      422,
      "The level of access for permissions requested are not granted to this installation.",
    ],
    [
      "admin where the grant is write",
      1,
      { permissions: { contents: "admin" } },
      422,
      "The level of access for permissions requested are not granted to this installation.",
    ],
    [
      "a repository outside a selected installation's list",
      1,
      { repositories: ["not-selected"] },
      422,
      "There is at least one repository that does not exist or is not accessible to the parent installation.",
    ],
    [
      "a repository that does not exist",
      2,
      { repositories: ["nope"] },
      422,
      "There is at least one repository that does not exist or is not accessible to the parent installation.",
    ],
    [
      "a repository id of another account",
      2,
      { repository_ids: [31] },
      422,
      "There is at least one repository that does not exist or is not accessible to the parent installation.",
    ],
    [
      "one good and one bad repository",
      1,
      { repositories: ["app"], repository_ids: [13] },
      422,
      "There is at least one repository that does not exist or is not accessible to the parent installation.",
    ],
    [
      "more than 500 repositories",
      2,
      { repositories: Array.from({ length: 501 }, (_, i) => `r${i}`) },
      422,
      "The maximum number of repositories that can be requested is 500.",
    ],
    [
      "more than 500 repositories counting names and ids",
      2,
      {
        repositories: Array.from({ length: 300 }, (_, i) => `r${i}`),
        repository_ids: Array.from({ length: 201 }, (_, i) => i + 1000),
      },
      422,
      "500",
    ],
  ])("%s → %i", async (_case, id, body, status, message) => {
    const r = await t.mint(id, body);
    expect(r.status).toBe(status);
    expect(messageOf(r)).toContain(message);
    expect(r.body).toMatchObject({
      status: String(status),
      documentation_url: expect.stringContaining("docs.github.com"),
    });
  });

  it("answers 400 Problems parsing JSON to a body that is not JSON", async () => {
    const r = await t.call("POST", "/app/installations/1/access_tokens", { auth: t.bearer(), raw: "{nope" });
    expect([r.status, messageOf(r)]).toEqual([400, "Problems parsing JSON"]);
  });

  it("answers 404 to an installation id of another App even when the body is bad", async () => {
    const r = await t.call("POST", "/app/installations/3/access_tokens", { auth: t.bearer(), raw: "{nope" });
    expect(r.status).toBe(404);
  });
});

describe("a minted token", () => {
  it("has exactly what was asked, and expires one lifetime later to the second", async () => {
    t.clock.advance(1234); // not on a whole second
    const r = await t.mint(1, { permissions: { contents: "read" }, repositories: ["app"] });
    expect(r.status).toBe(201);
    const body = r.body as MintBody;
    expect(body.token).toMatch(/^ghs_[A-Za-z0-9]{36}$/);
    expect(body.expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Date.parse(body.expires_at)).toBe(Math.floor(t.clock.now() / 1000) * 1000 + 3600_000);
    expect(body.permissions).toEqual({ contents: "read" });
    expect(body.repository_selection).toBe("selected");
    expect(body.repositories?.map((x) => x.full_name)).toEqual(["acme/app"]);
    expect(r.headers.get("x-ratelimit-limit")).toBeNull();
    expect(t.sim.checkToken(body.token, "acme/app").live).toBe(true);
    expect(t.sim.checkToken(body.token, "acme/lib")).toMatchObject({
      live: false,
      reason: "no access to acme/lib",
    });
  });

  it("gets every permission and repository of the installation when the body is empty, and no repositories field", async () => {
    const r = await t.mint(1);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      permissions: { contents: "write", issues: "read", metadata: "read", repository_projects: "admin" },
      repository_selection: "selected",
    });
    expect(r.body).not.toHaveProperty("repositories");
    const token = (r.body as MintBody).token;
    expect(t.sim.checkToken(token, "acme/lib").live).toBe(true);
    expect(t.sim.checkToken(token, "acme/not-selected").live).toBe(false);
  });

  it.each([
    ["an empty object", {}],
    ["empty permissions and repositories", { permissions: {}, repositories: [] }],
  ])("treats %s like no body", async (_case, body) => {
    const r = await t.mint(2, body);
    expect(r.body).toMatchObject({
      permissions: { contents: "read", metadata: "read" },
      repository_selection: "all",
    });
    expect(r.body).not.toHaveProperty("repositories");
  });

  it("grants a lower level than the installation has", async () => {
    const r = await t.mint(1, { permissions: { contents: "read", repository_projects: "write" } });
    expect((r.body as MintBody).permissions).toEqual({ contents: "read", repository_projects: "write" });
  });

  it("accepts repository ids and names together, once each, case-insensitively", async () => {
    const r = await t.mint(1, { repositories: ["APP", "app"], repository_ids: [12, 11] });
    expect((r.body as MintBody).repositories?.map((x) => x.id)).toEqual([11, 12]);
    expect(t.sim.checkToken((r.body as MintBody).token).scope).toMatchObject({
      repositoryIds: [11, 12],
      repositories: ["acme/app", "acme/lib"],
      repositorySelection: "selected",
    });
  });

  it("is a new, independent token at every request", async () => {
    const a = await t.token(2);
    const b = await t.token(2);
    expect(a).not.toBe(b);
    await t.call("DELETE", "/installation/token", { auth: `token ${a}` });
    expect(t.sim.checkToken(a).live).toBe(false);
    expect(t.sim.checkToken(b).live).toBe(true);
  });

  it("answers 401 Bad credentials once revoked, with either Authorization scheme", async () => {
    for (const scheme of ["token", "Bearer"]) {
      const token = await t.token(2);
      const auth = `${scheme} ${token}`;
      expect((await t.call("GET", "/installation/repositories", { auth })).status).toBe(200);
      const revoked = await t.call("DELETE", "/installation/token", { auth });
      expect(revoked.status).toBe(204);
      expect(revoked.body).toBeUndefined();
      const after = await t.call("GET", "/installation/repositories", { auth });
      expect([after.status, messageOf(after)]).toEqual([401, "Bad credentials"]);
      expect((await t.call("DELETE", "/installation/token", { auth })).status).toBe(401);
      expect(t.sim.checkToken(token)).toMatchObject({ live: false, reason: "revoked" });
    }
  });

  it("answers 401 Bad credentials once expired, on the simulator's clock", async () => {
    const token = await t.token(2);
    const auth = `token ${token}`;
    t.clock.advance(3599_000);
    expect((await t.call("GET", "/installation/repositories", { auth })).status).toBe(200);
    t.clock.advance(1000);
    const after = await t.call("GET", "/installation/repositories", { auth });
    expect([after.status, messageOf(after)]).toEqual([401, "Bad credentials"]);
    expect(t.sim.checkToken(token)).toMatchObject({ live: false, reason: "expired" });
  });

  it("answers 401 Bad credentials to a token the simulator never issued, without echoing it", async () => {
    const fake = "ghs_0123456789abcdefghijklmnopqrstuvwxyz";
    const r = await t.call("GET", "/installation/repositories", { auth: `token ${fake}` });
    expect([r.status, messageOf(r)]).toEqual([401, "Bad credentials"]);
    expect(JSON.stringify(r.body)).not.toContain(fake);
    expect((await t.call("GET", "/installation/repositories")).status).toBe(401);
  });

  it("stops working when its installation is suspended (403) or removed (401)", async () => {
    await t.sim.state.addInstallation({
      id: 50,
      appId,
      account: { login: "octocat", type: "User" },
      permissions: { contents: "read" },
    });
    const token = await t.token(50);
    const auth = `token ${token}`;
    t.sim.state.suspendInstallation(50, new Date(t.sim.now()));
    const suspended = await t.call("GET", "/installation/repositories", { auth });
    expect([suspended.status, messageOf(suspended)]).toEqual([403, "This installation has been suspended"]);
    expect(t.sim.checkToken(token).reason).toBe("installation suspended");
    t.sim.state.unsuspendInstallation(50);
    expect(t.sim.checkToken(token).live).toBe(true);
    t.sim.state.removeInstallation(50);
    expect((await t.call("GET", "/installation/repositories", { auth })).status).toBe(401);
    expect(t.sim.checkToken(token).reason).toBe("installation removed");
  });

  it("lists the repositories it reaches, paged, with the installation's selection", async () => {
    const token = await t.token(1, { repositories: ["lib"] });
    const r = await t.call("GET", "/installation/repositories", { auth: `token ${token}` });
    expect(r.body).toMatchObject({
      total_count: 1,
      repository_selection: "selected",
      repositories: [{ id: 12, full_name: "acme/lib", private: true }],
    });
    const all = await t.token(2);
    expect((await t.call("GET", "/installation/repositories", { auth: `token ${all}` })).body).toMatchObject({
      total_count: 1,
      repository_selection: "all",
      repositories: [{ full_name: "octocat/hello", private: false }],
    });
  });
});

describe("token formats", () => {
  const classic = /^ghs_[A-Za-z0-9]{36}$/;
  const stateless = (id: number) => new RegExp(`^ghs_${id}_[A-Za-z0-9._]+$`);

  function expectStateless(token: string) {
    expect(token).toMatch(stateless(appId));
    expect(token).toMatch(/^ghs_[A-Za-z0-9._]{36,}$/); // GitHub's recommended pattern
    expect(token.length).toBeGreaterThanOrEqual(510);
    expect(token.length).toBeLessThanOrEqual(530);
    expect(token.slice(`ghs_${appId}_`.length).split(".")).toHaveLength(3);
  }

  it("is classic by default, stateless on request, classic when disabled", async () => {
    expect(await t.token(2)).toMatch(classic);
    const s = await t.token(2, undefined, { "x-github-stateless-s2s-token": "enabled" });
    expectStateless(s);
    expect(t.sim.checkToken(s).live).toBe(true);
    expect(t.sim.checkToken(s).scope?.format).toBe("stateless");
    expect(await t.token(2, undefined, { "x-github-stateless-s2s-token": "disabled" })).toMatch(classic);
  });

  it("is stateless by default when configured, and classic when the header disables it", async () => {
    const s = await startTestSim({ tokenFormat: "stateless" });
    try {
      const token = await s.token(2);
      expectStateless(token);
      const auth = `token ${token}`;
      expect((await s.call("GET", "/installation/repositories", { auth })).status).toBe(200);
      expect((await s.call("DELETE", "/installation/token", { auth })).status).toBe(204);
      expect((await s.call("GET", "/installation/repositories", { auth })).status).toBe(401);
      expect(await s.token(2, undefined, { "X-GitHub-Stateless-S2S-Token": "Disabled" })).toMatch(classic);
    } finally {
      await s.close();
    }
  });

  it("is never stateless on Enterprise Server, whatever is asked", async () => {
    const ghes = await startTestSim({ enterprise: true, tokenFormat: "stateless" });
    try {
      expect(await ghes.token(2, undefined, { "x-github-stateless-s2s-token": "enabled" })).toMatch(classic);
    } finally {
      await ghes.close();
    }
  });
});

describe("token lifetime", () => {
  it("follows tokenLifetimeSeconds", async () => {
    const short = await startTestSim({ tokenLifetimeSeconds: 90 });
    try {
      const r = await short.mint(2);
      const body = r.body as MintBody;
      expect(Date.parse(body.expires_at)).toBe(Math.floor(short.clock.now() / 1000) * 1000 + 90_000);
      short.clock.advance(89_999);
      expect(short.sim.checkToken(body.token).live).toBe(true);
      short.clock.advance(1);
      expect(short.sim.checkToken(body.token)).toMatchObject({ live: false, reason: "expired" });
      expect(short.sim.liveTokens().map((s) => s.fingerprint)).not.toContain(
        short.sim.checkToken(body.token).scope?.fingerprint,
      );
    } finally {
      await short.close();
    }
  });
});

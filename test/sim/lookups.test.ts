import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appId, call, messageOf, startTestSim, type TestSim } from "./helpers.ts";

let t: TestSim;
beforeAll(async () => {
  t = await startTestSim();
  t.sim.state.addRepository({ id: 14, owner: "acme", name: "old-name" });
  t.sim.state.installations.get(1)?.repositoryIds?.push(14);
  t.sim.state.renameRepository(14, "new-name");
});
afterAll(() => t.close());

const jwt = () => ({ auth: t.bearer() });

describe("installation lookups", () => {
  it.each([
    ["/app/installations/1", 200, 1],
    ["/app/installations/3", 404, undefined], // another App's
    ["/app/installations/4", 200, 4], // suspended ones are still found
    ["/app/installations/77", 404, undefined],
    ["/orgs/acme/installation", 200, 1],
    ["/orgs/ACME/installation", 200, 1],
    ["/orgs/octocat/installation", 404, undefined], // a user, not an org
    ["/orgs/other/installation", 404, undefined], // another App's
    ["/users/octocat/installation", 200, 2],
    ["/users/acme/installation", 200, 1], // works for orgs too
    ["/users/nobody/installation", 404, undefined],
    ["/repos/acme/app/installation", 200, 1],
    ["/repos/Acme/App/installation", 200, 1],
    ["/repos/octocat/hello/installation", 200, 2],
    ["/repos/acme/not-selected/installation", 404, undefined],
    ["/repos/other/thing/installation", 404, undefined],
    ["/repos/nobody/nothing/installation", 404, undefined],
    ["/repositories/11/installation", 200, 1],
  ])("GET %s → %i", async (path, status, id) => {
    const r = await t.call("GET", path, jwt());
    expect(r.status).toBe(status);
    if (id === undefined) expect(messageOf(r)).toBe("Not Found");
    else expect(r.body).toMatchObject({ id, app_id: appId });
  });

  it("answers 301 for a renamed repository, pointing at its id", async () => {
    const r = await t.call("GET", "/repos/acme/old-name/installation", jwt());
    const location = `${t.sim.apiUrl}/repositories/14/installation`;
    expect(r.status).toBe(301);
    expect(r.headers.get("location")).toBe(location);
    expect(r.body).toMatchObject({ message: "Moved Permanently", url: location });
    const followed = await call(t.sim.url, "GET", new URL(location).pathname, jwt());
    expect(followed.body).toMatchObject({ id: 1 });
  });

  it("describes an installation as GitHub does", async () => {
    const r = await t.call("GET", "/app/installations/1", jwt());
    expect(r.body).toMatchObject({
      id: 1,
      app_id: appId,
      app_slug: "test-app",
      account: { login: "acme", type: "Organization" },
      target_type: "Organization",
      repository_selection: "selected",
      permissions: { contents: "write", issues: "read", metadata: "read" },
      access_tokens_url: `${t.sim.apiUrl}/app/installations/1/access_tokens`,
      suspended_at: null,
      events: [],
    });
    expect((await t.call("GET", "/app/installations/4", jwt())).body).toMatchObject({
      suspended_at: "2026-01-01T00:00:00Z",
    });
  });

  it("describes the App, with its installations' permissions when it has none of its own", async () => {
    const r = await t.call("GET", "/app", jwt());
    expect(r.body).toMatchObject({
      id: appId,
      slug: "test-app",
      client_id: "Iv23liTestApp",
      owner: { login: "acme" },
      permissions: { contents: "write", issues: "read", metadata: "read", repository_projects: "admin" },
      installations_count: 3,
    });
  });
});

describe("pagination", () => {
  let many: TestSim;
  beforeAll(async () => {
    many = await startTestSim();
    for (let id = 100; id < 105; id++) {
      many.sim.state.addInstallation({
        id,
        appId,
        account: { login: `org${id}` },
        permissions: { metadata: "read" },
      });
    }
  });
  afterAll(() => many.close());

  const list = (query: string) => many.call("GET", `/app/installations${query}`, { auth: many.bearer() });
  const ids = (body: unknown) => (body as { id: number }[]).map((i) => i.id);

  it("sends no Link header when everything fits on one page", async () => {
    const r = await list("");
    expect(ids(r.body)).toEqual([1, 2, 4, 100, 101, 102, 103, 104]);
    expect(r.headers.get("link")).toBeNull();
  });

  it("links next and last from the first page, in GitHub's format", async () => {
    const r = await list("?per_page=3");
    expect(ids(r.body)).toEqual([1, 2, 4]);
    const base = `${many.sim.apiUrl}/app/installations`;
    expect(r.headers.get("link")).toBe(
      `<${base}?per_page=3&page=2>; rel="next", <${base}?per_page=3&page=3>; rel="last"`,
    );
  });

  it("links all four ways from a middle page and only back from the last", async () => {
    const base = `${many.sim.apiUrl}/app/installations`;
    const middle = await list("?per_page=3&page=2");
    expect(ids(middle.body)).toEqual([100, 101, 102]);
    expect(middle.headers.get("link")).toBe(
      [
        `<${base}?per_page=3&page=1>; rel="prev"`,
        `<${base}?per_page=3&page=3>; rel="next"`,
        `<${base}?per_page=3&page=3>; rel="last"`,
        `<${base}?per_page=3&page=1>; rel="first"`,
      ].join(", "),
    );
    const last = await list("?per_page=3&page=3");
    expect(ids(last.body)).toEqual([103, 104]);
    expect(last.headers.get("link")).toBe(
      `<${base}?per_page=3&page=2>; rel="prev", <${base}?per_page=3&page=1>; rel="first"`,
    );
  });

  it("visits every installation exactly once by following rel=next", async () => {
    const seen: number[] = [];
    let next: string | undefined = `${many.sim.apiUrl}/app/installations?per_page=2`;
    while (next) {
      const r = await call("", "GET", next, { auth: many.bearer() });
      seen.push(...ids(r.body));
      next = r.headers.get("link")?.match(/<([^>]+)>; rel="next"/)?.[1];
    }
    expect(seen).toEqual([1, 2, 4, 100, 101, 102, 103, 104]);
  });

  it("caps per_page at 100 and ignores nonsense", async () => {
    expect(ids((await list("?per_page=1000")).body)).toHaveLength(8);
    expect(ids((await list("?per_page=zero&page=-2")).body)).toHaveLength(8);
  });

  it("answers an empty page past the end", async () => {
    const r = await list("?per_page=3&page=9");
    expect(r.body).toEqual([]);
  });

  it("pages the repositories a token reaches", async () => {
    for (let id = 200; id < 205; id++) many.sim.state.addRepository({ id, owner: "octocat", name: `r${id}` });
    const token = await many.token(2);
    const r = await many.call("GET", "/installation/repositories?per_page=4&page=2", {
      auth: `token ${token}`,
    });
    expect(r.body).toMatchObject({ total_count: 6 });
    expect((r.body as { repositories: { id: number }[] }).repositories.map((x) => x.id)).toEqual([203, 204]);
    expect(r.headers.get("link")).toContain(
      `<${many.sim.apiUrl}/installation/repositories?per_page=4&page=1>; rel="prev"`,
    );
  });
});

describe("HTTP surface", () => {
  it("puts a Date header from the simulator's clock on every response, errors and admin included", async () => {
    for (const [method, path] of [
      ["GET", "/app"],
      ["GET", "/nowhere"],
      ["POST", "/app"],
      ["GET", "/_sim/counts"],
      ["GET", "/installation/repositories"],
    ] as const) {
      const r = await t.call(method, path);
      expect(Date.parse(r.headers.get("date") ?? ""), `${method} ${path}`).toBe(
        Math.floor(t.clock.now() / 1000) * 1000,
      );
    }
  });

  it("answers 404 Not Found with GitHub's error body to an unknown route or method", async () => {
    for (const [method, path] of [
      ["GET", "/nowhere"],
      ["DELETE", "/app"],
      ["GET", "/app/installations/abc"],
      ["GET", "/orgs/%E0%A4%A/installation"],
    ] as const) {
      const r = await t.call(method, path, jwt());
      expect([r.status, r.body], `${method} ${path}`).toEqual([
        404,
        { message: "Not Found", documentation_url: "https://docs.github.com/rest", status: "404" },
      ]);
    }
  });

  it("echoes the API version it used", async () => {
    const plain = await t.call("GET", "/app", jwt());
    expect(plain.headers.get("x-github-api-version-selected")).toBe("2022-11-28");
    const newest = await t.call("GET", "/app", {
      ...jwt(),
      headers: { "x-github-api-version": "2026-03-10" },
    });
    expect(newest.headers.get("x-github-api-version-selected")).toBe("2026-03-10");
  });

  it("serves every route under /api/v3 too", async () => {
    expect((await t.call("GET", "/api/v3/orgs/acme/installation", jwt())).status).toBe(200);
    expect(t.sim.apiUrl).toBe(t.sim.url);
  });
});

describe("Enterprise Server mode", () => {
  it("has its API under /api/v3, still serves the bare paths, and puts the prefix in URLs", async () => {
    const ghes = await startTestSim({ enterprise: true });
    try {
      expect(ghes.sim.apiUrl).toBe(`${ghes.sim.url}/api/v3`);
      const r = await ghes.call("GET", "/api/v3/app/installations/1", { auth: ghes.bearer() });
      expect(r.body).toMatchObject({
        access_tokens_url: `${ghes.sim.url}/api/v3/app/installations/1/access_tokens`,
      });
      expect((await ghes.call("GET", "/app/installations/1", { auth: ghes.bearer() })).status).toBe(200);
      const token = await ghes.token(2);
      const repos = await ghes.call("GET", "/api/v3/installation/repositories", { auth: `token ${token}` });
      expect(repos.status).toBe(200);
      expect(repos.headers.get("x-ratelimit-limit")).toBeNull(); // rate limits off by default
    } finally {
      await ghes.close();
    }
  });
});

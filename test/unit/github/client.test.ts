import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fetch as undiciFetch } from "undici";
import { describe, expect, it } from "vitest";
import { createGitHubClient, type Fetch } from "../../../src/github/client.ts";
import type { AppCredentials, RateLimit, RequestInfo } from "../../../src/github/types.ts";
import { appJwt, type FakeGitHub, githubError, installationBody, testKeyPair } from "./fakegithub.ts";
import { caught, client, clock, github, mintPath, start, tokenBody, useFakeGitHub } from "./helpers.ts";

const { privateKey, publicKey } = testKeyPair();
const app: AppCredentials = { appId: 12345, key: privateKey };
const startSeconds = start / 1000;

useFakeGitHub();

describe("Every request carries what GitHub expects", () => {
  it("signs App requests with a fresh RS256 JWT and sends Accept, the API version and the user agent", async () => {
    github.on("GET", "/app", { status: 200, body: { id: 12345, name: "ghat test", slug: "ghat-test" } });
    const info = await client().getApp(app);
    expect(info).toEqual({ id: 12345, name: "ghat test", slug: "ghat-test", clientId: undefined });
    const req = github.requests[0];
    if (!req) throw new Error("no request");
    expect(req.headers).toMatchObject({
      accept: "application/vnd.github+json",
      "x-github-api-version": "2022-11-28",
      "user-agent": "ghat/test",
    });
    expect(req.headers["x-github-stateless-s2s-token"]).toBeUndefined();
    const { header, claims } = await appJwt(req, publicKey);
    expect(header).toEqual({ alg: "RS256", typ: "JWT" });
    expect(claims).toEqual({ iss: 12345, iat: startSeconds - 60, exp: startSeconds + 540 });
  });

  it.each([
    ["enabled", "2026-03-10"],
    ["disabled", "2022-11-28"],
  ] as const)(
    "sends X-GitHub-Stateless-S2S-Token: %s and API version %s when configured",
    async (format, version) => {
      github.on("POST", mintPath(1), { status: 201, body: tokenBody() });
      await client({ tokenFormat: format, apiVersion: version }).mintToken(app, 1);
      expect(github.requests[0]?.headers).toMatchObject({
        "x-github-stateless-s2s-token": format,
        "x-github-api-version": version,
      });
    },
  );

  it.each<[string, AppCredentials, unknown]>([
    ["the numeric App id when both are known", { appId: 7, clientId: "Iv23liAbc", key: privateKey }, 7],
    ["the client id when there is no App id", { clientId: "Iv23liAbc", key: privateKey }, "Iv23liAbc"],
  ])("uses %s as the JWT issuer", async (_case, credentials, iss) => {
    github.on("GET", "/app", { status: 200, body: { id: 7, name: "x" } });
    await client().getApp(credentials);
    const req = github.requests[0];
    if (!req) throw new Error("no request");
    expect((await appJwt(req, publicKey)).claims.iss).toEqual(iss);
  });

  it("refuses credentials with neither App id nor client id before sending anything", async () => {
    const err = await caught(client().getApp({ key: privateKey }));
    expect(err.code).toBe("InvalidSpec");
    expect(github.requests).toHaveLength(0);
  });

  it("names itself ghat/<version from package.json> by default", async () => {
    github.on("GET", "/app", { status: 200, body: { id: 1, name: "x" } });
    await createGitHubClient({ baseUrl: github.url, clock }).getApp(app);
    expect(github.requests[0]?.headers["user-agent"]).toMatch(/^ghat\/\d+\.\d+\.\d+/);
  });

  it("talks to Enterprise Server below /api/v3, tolerating trailing slashes in the base URL", async () => {
    github.on("GET", "/api/v3/app/installations/3", { status: 200, body: installationBody(3) });
    const installation = await client({ baseUrl: `${github.url}/api/v3//` }).getInstallation(app, 3);
    expect(installation.id).toBe(3);
    expect(github.requests.map((r) => r.url)).toEqual(["/api/v3/app/installations/3"]);
  });

  it.each(["not a url", "ftp://github.example.com", "https://user:pass@github.example.com/api/v3"])(
    "refuses the base URL %s as InvalidSpec",
    (baseUrl) => {
      expect(() => client({ baseUrl })).toThrow(expect.objectContaining({ code: "InvalidSpec" }));
    },
  );
});

describe("mintToken", () => {
  it("posts the requested scope and returns what GitHub granted, expiring at the server's expires_at", async () => {
    github.on("POST", mintPath(42), {
      status: 201,
      body: tokenBody({
        repositories: [
          { id: 10, name: "app", full_name: "acme/app", private: true },
          { id: 11, name: "lib", full_name: "acme/lib", private: false },
        ],
      }),
    });
    const minted = await client().mintToken(app, 42, {
      permissions: { contents: "read" },
      repositories: ["app", "lib"],
      repositoryIds: [11],
    });
    const req = github.requests[0];
    expect(req?.method).toBe("POST");
    expect(req?.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(req?.body ?? "")).toEqual({
      permissions: { contents: "read" },
      repositories: ["app", "lib"],
      repository_ids: [11],
    });
    expect(minted).toEqual({
      token: "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
      expiresAt: Date.parse("2026-11-24T12:59:59Z"),
      permissions: { contents: "read", metadata: "read" },
      repositorySelection: "selected",
      repositories: [
        { id: 10, name: "app", fullName: "acme/app" },
        { id: 11, name: "lib", fullName: "acme/lib" },
      ],
    });
  });

  it("sends no body at all when the request has only empty fields", async () => {
    github.on("POST", mintPath(1), { status: 201, body: tokenBody({ repository_selection: "all" }) });
    const minted = await client().mintToken(app, 1, { permissions: {}, repositories: [], repositoryIds: [] });
    expect(github.requests[0]?.body).toBe("");
    expect(github.requests[0]?.headers["content-type"]).toBeUndefined();
    expect(minted.repositories).toBeUndefined();
    expect(minted.repositorySelection).toBe("all");
  });

  it("never mutates the caller's arrays or permissions, and keeps their order", async () => {
    github.on("POST", mintPath(1), { status: 201, body: tokenBody() });
    const repositoryIds = Object.freeze([30, 100, 2]);
    const repositories = Object.freeze(["b", "a"]);
    const permissions = Object.freeze({ issues: "write", contents: "read" });
    await client().mintToken(app, 1, { permissions, repositories, repositoryIds });
    expect(repositoryIds).toEqual([30, 100, 2]);
    expect(repositories).toEqual(["b", "a"]);
    expect(JSON.parse(github.requests[0]?.body ?? "")).toMatchObject({
      repository_ids: [30, 100, 2],
      repositories: ["b", "a"],
    });
  });

  it("passes GitHub's long stateless token format through untouched", async () => {
    const long = `ghs_12345_${"eyJhbGciOiJSUzI1NiJ9"}.${"a".repeat(400)}.${"b_c-d".repeat(20)}`;
    github.on("POST", mintPath(1), { status: 201, body: tokenBody({ token: long }) });
    expect((await client().mintToken(app, 1)).token).toBe(long);
  });

  it.each<[string, unknown]>([
    ["not JSON", "<html>oops</html>"],
    ["without a token", { expires_at: "2026-11-24T12:59:59Z" }],
    ["with an unreadable expires_at", tokenBody({ expires_at: "in an hour" })],
    ["with a numeric token", tokenBody({ token: 5 })],
  ])("refuses a 201 %s as GitHubUnavailable, naming the route", async (_case, body) => {
    github.on("POST", mintPath(1), { status: 201, body });
    const err = await caught(client().mintToken(app, 1));
    expect(err).toMatchObject({ code: "GitHubUnavailable", retryable: true });
    expect(err.message).toContain(`POST ${mintPath(1)}`);
    expect(err.message).not.toContain("ghs_");
  });

  it.each([0, -1, 1.5, Number.NaN])("refuses installation id %s before sending anything", async (id) => {
    expect((await caught(client().mintToken(app, id))).code).toBe("InvalidSpec");
    expect(github.requests).toHaveLength(0);
  });
});

describe("revokeToken", () => {
  it.each<[string, Parameters<FakeGitHub["on"]>[2]]>([
    ["204 No Content", { status: 204 }],
    ["401 Bad credentials (already expired or revoked)", githubError(401, "Bad credentials")],
  ])("treats %s as revoked", async (_case, reply) => {
    github.on("DELETE", "/installation/token", reply);
    await expect(client().revokeToken("ghs_16C7e42F292c6912E7710c838347Ae178B4a")).resolves.toBeUndefined();
    const req = github.requests[0];
    expect(req?.headers.authorization).toBe("token ghs_16C7e42F292c6912E7710c838347Ae178B4a");
    expect(req?.headers["x-github-api-version"]).toBe("2022-11-28");
  });

  it("reports a 5xx as GitHubUnavailable", async () => {
    github.on("DELETE", "/installation/token", githubError(503, "Service Unavailable"));
    const err = await caught(client().revokeToken("ghs_16C7e42F292c6912E7710c838347Ae178B4a"));
    expect(err).toMatchObject({ code: "GitHubUnavailable", status: 503 });
  });

  it("reports the installation's rate-limit headroom from the answer", async () => {
    github.on("DELETE", "/installation/token", {
      status: 204,
      headers: {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4990",
        "x-ratelimit-used": "10",
        "x-ratelimit-reset": String(startSeconds + 1800),
        "x-ratelimit-resource": "core",
      },
    });
    const seen: [number, RateLimit][] = [];
    await client({ onRateLimit: (id, rl) => seen.push([id, rl]) }).revokeToken("ghs_x1234567890", 42);
    expect(seen).toEqual([[42, { limit: 5000, remaining: 4990, used: 10, reset: startSeconds + 1800 }]]);
  });

  it.each(["", "  ", "ghs_a\nInjected: header"])(
    "refuses the token %j before sending anything",
    async (token) => {
      expect((await caught(client().revokeToken(token))).code).toBe("InvalidSpec");
      expect(github.requests).toHaveLength(0);
    },
  );
});

describe("Installations", () => {
  it("reads an installation into ghat's small type", async () => {
    github.on("GET", "/app/installations/5", {
      status: 200,
      body: installationBody(5, { suspended_at: "2026-11-01T00:00:00Z" }),
    });
    expect(await client().getInstallation(app, 5)).toEqual({
      id: 5,
      appId: 12345,
      account: { login: "acme", type: "Organization" },
      repositorySelection: "selected",
      permissions: { contents: "write", metadata: "read" },
      suspendedAt: "2026-11-01T00:00:00Z",
    });
  });

  it("reads an enterprise installation's account by its slug", async () => {
    github.on("GET", "/app/installations/6", {
      status: 200,
      body: installationBody(6, { account: { id: 9, slug: "big-corp", name: "Big Corp" } }),
    });
    expect((await client().getInstallation(app, 6)).account).toEqual({
      login: "big-corp",
      type: "Enterprise",
    });
  });

  it("finds an installation by owner through /users/{owner}/installation (organizations too)", async () => {
    github.on("GET", "/users/acme/installation", { status: 200, body: installationBody(1) });
    expect((await client().findInstallationByOwner(app, "acme")).id).toBe(1);
  });

  it("finds an installation by repository through /repos/{owner}/{repo}/installation", async () => {
    github.on("GET", "/repos/acme/app.js/installation", { status: 200, body: installationBody(2) });
    expect((await client().findInstallationByRepository(app, "acme/app.js")).id).toBe(2);
  });

  it.each(["acme", "acme/app/x", "/app", "acme/"])(
    "refuses the repository %j before sending anything",
    async (r) => {
      expect((await caught(client().findInstallationByRepository(app, r))).code).toBe("InvalidSpec");
      expect(github.requests).toHaveLength(0);
    },
  );

  it("lists installations across pages by following Link rel=next", async () => {
    const link = (page: number) =>
      `<${github.url}/app/installations?per_page=100&page=${page}>; rel="next", <${github.url}/app/installations?per_page=100&page=3>; rel="last"`;
    github.on("GET", "/app/installations", (req) => {
      const page = Number(new URL(req.url, github.url).searchParams.get("page") ?? "1");
      return {
        status: 200,
        headers: page < 3 ? { link: link(page + 1) } : {},
        body: [installationBody(page * 10), installationBody(page * 10 + 1)],
      };
    });
    const all = await client().listInstallations(app);
    expect(all.map((i) => i.id)).toEqual([10, 11, 20, 21, 30, 31]);
    expect(github.requests.map((r) => r.url)).toEqual([
      "/app/installations?per_page=100",
      "/app/installations?per_page=100&page=2",
      "/app/installations?per_page=100&page=3",
    ]);
  });

  it("does not follow a Link to another host with the App's JWT", async () => {
    github.on("GET", "/app/installations", {
      status: 200,
      headers: { link: '<https://evil.example/app/installations?page=2>; rel="next"' },
      body: [installationBody(1)],
    });
    const err = await caught(client().listInstallations(app));
    expect(err.code).toBe("GitHubUnavailable");
    expect(err.message).toContain("refusing to follow");
    expect(github.requests).toHaveLength(1);
  });

  it("refuses an installation body that does not match GitHub's API as GitHubUnavailable", async () => {
    github.on("GET", "/app/installations/5", { status: 200, body: { id: "five" } });
    const err = await caught(client().getInstallation(app, 5));
    expect(err.code).toBe("GitHubUnavailable");
    expect(err.message).toContain("GET /app/installations/5");
  });
});

describe("Clock skew", () => {
  /** GitHub with its own clock: refuses JWTs outside its window, like GitHub does. */
  function githubWithClock(githubNowMs: number) {
    github.on("GET", "/app", async (req) => {
      const { claims } = await appJwt(req, publicKey);
      const now = Math.floor(githubNowMs / 1000);
      const date = { date: new Date(githubNowMs).toUTCString() };
      if (typeof claims.iat !== "number" || claims.iat > now) {
        return githubError(
          401,
          "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
          date,
        );
      }
      if (typeof claims.exp !== "number" || claims.exp <= now) {
        return githubError(
          401,
          "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
          date,
        );
      }
      if (claims.exp > now + 600) {
        return githubError(401, "'Expiration time' claim ('exp') is too far in the future", date);
      }
      return { status: 200, headers: date, body: { id: 12345, name: "x" } };
    });
  }

  it.each([
    ["10 minutes slow", 10 * 60_000],
    ["5 minutes fast", -5 * 60_000],
    ["3 minutes fast", -3 * 60_000],
  ])("re-signs once with GitHub's time when our clock is %s, and keeps the offset", async (_case, skew) => {
    githubWithClock(start + skew);
    const c = client();
    await c.getApp(app);
    expect(github.requests).toHaveLength(2);
    expect(c.clockOffsetMs()).toBe(skew);

    await c.getApp(app);
    expect(github.requests).toHaveLength(3);
    const last = github.requests[2];
    if (!last) throw new Error("no request");
    expect((await appJwt(last, publicKey)).claims.iat).toBe((start + skew) / 1000 - 60);
  });

  it("re-signs only once: a second time-claim error is JWTRejected with status 401", async () => {
    github.on(
      "GET",
      "/app",
      githubError(401, "'Expiration time' claim ('exp') is too far in the future", {
        date: new Date(start).toUTCString(),
      }),
    );
    const err = await caught(client().getApp(app));
    expect(err).toMatchObject({ code: "JWTRejected", status: 401, retryable: false });
    expect(err.message).toContain("clock");
    expect(github.requests).toHaveLength(2);
  });

  it("cannot correct without GitHub's Date header, and reports the time-claim error", async () => {
    github.on("GET", "/app", githubError(401, "'Issued at' claim ('iat') must be an Integer"));
    const err = await caught(client().getApp(app));
    expect(err.code).toBe("JWTRejected");
    expect(github.requests).toHaveLength(1);
  });

  it("does not retry a JWT GitHub cannot decode (wrong key)", async () => {
    github.on(
      "GET",
      "/app",
      githubError(401, "A JSON web token could not be decoded", {
        date: new Date(start + 3_600_000).toUTCString(),
      }),
    );
    const c = client();
    const err = await caught(c.getApp(app));
    expect(err.code).toBe("JWTRejected");
    expect(err.message).toContain("private key does not belong to this App");
    expect(github.requests).toHaveLength(1);
    expect(c.clockOffsetMs()).toBe(0);
  });
});

describe("Errors are classified with GitHub's words, the status and the route", () => {
  const now = start;
  it.each<[string, string, string, ReturnType<typeof githubError>, string, number | undefined, string]>([
    [
      "an unknown App id",
      "POST",
      mintPath(7),
      githubError(404, "Integration not found"),
      "JWTRejected",
      undefined,
      "App id 12345",
    ],
    [
      "an unknown installation",
      "POST",
      mintPath(7),
      githubError(404, "Not Found"),
      "InstallationNotFound",
      undefined,
      "installation 7 does not exist",
    ],
    [
      "a suspended installation",
      "POST",
      mintPath(7),
      githubError(403, "This installation has been suspended"),
      "InstallationSuspended",
      undefined,
      "suspended",
    ],
    [
      "a permission not granted",
      "POST",
      mintPath(7),
      githubError(422, "The permissions requested are not granted to this installation."),
      "PermissionsNotGranted",
      undefined,
      "not granted to this installation",
    ],
    [
      "a repository not covered",
      "POST",
      mintPath(7),
      githubError(
        422,
        "There is at least one repository that does not exist or is not accessible to the parent installation.",
      ),
      "RepositoriesNotGranted",
      undefined,
      "not accessible to the parent installation",
    ],
    [
      "an exhausted primary rate limit",
      "POST",
      mintPath(7),
      githubError(403, "API rate limit exceeded for installation ID 7.", {
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": String(startSeconds + 900),
      }),
      "RateLimited",
      now + 900_000,
      "rate limit",
    ],
    [
      "a secondary rate limit with retry-after",
      "POST",
      mintPath(7),
      githubError(
        429,
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        { "retry-after": "30" },
      ),
      "RateLimited",
      now + 30_000,
      "secondary rate limit",
    ],
    [
      "a 502 with an HTML page",
      "POST",
      mintPath(7),
      { status: 502, body: "<html><body>Bad gateway</body></html>" },
      "GitHubUnavailable",
      undefined,
      "502",
    ],
    [
      "an HTML 404 (wrong API URL)",
      "POST",
      mintPath(7),
      { status: 404, body: "<html>Page not found</html>" },
      "InstallationNotFound",
      undefined,
      "api/v3",
    ],
  ])("%s", async (_case, method, path, reply, code, retryAt, words) => {
    github.on(method, path, reply);
    const err = await caught(client().mintToken(app, 7));
    expect(err.code).toBe(code);
    expect(err.status).toBe(reply.status);
    expect(err.retryAt).toBe(retryAt);
    expect(err.message).toContain(words);
    expect(err.message).toContain(String(reply.status));
    expect(err.message).toContain(`POST ${mintPath(7)}`);
  });

  it("says which owner has no installation", async () => {
    const err = await caught(client().findInstallationByOwner(app, "nobody"));
    expect(err).toMatchObject({ code: "InstallationNotFound", status: 404 });
    expect(err.message).toContain("not installed on account nobody");
  });

  it("turns a GitHub that does not answer in time into GitHubUnavailable", async () => {
    github.on("GET", "/app", () => "hang");
    const err = await caught(client({ timeoutMs: 100 }).getApp(app));
    expect(err).toMatchObject({ code: "GitHubUnavailable", retryable: true, status: undefined });
    expect(err.message).toContain("no answer within 100 ms");
    expect(err.message).toContain("GET /app");
  });

  it("turns a reset connection into GitHubUnavailable", async () => {
    github.on("GET", "/app", () => "reset");
    const err = await caught(client().getApp(app));
    expect(err).toMatchObject({ code: "GitHubUnavailable", retryable: true });
  });

  it("turns a refused connection into GitHubUnavailable", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const err = await caught(client({ baseUrl: `http://127.0.0.1:${port}` }).getApp(app));
    expect(err).toMatchObject({ code: "GitHubUnavailable", retryable: true });
    expect(err.message).toContain("connection refused");
  });

  it("turns a failed DNS lookup into GitHubUnavailable naming the host", async () => {
    const dnsFailure: Fetch = async () => {
      throw new TypeError("fetch failed", {
        cause: Object.assign(new Error("getaddrinfo ENOTFOUND github.example.invalid"), {
          code: "ENOTFOUND",
        }),
      });
    };
    const err = await caught(
      client({ baseUrl: "https://github.example.invalid/api/v3", fetch: dnsFailure }).getApp(app),
    );
    expect(err).toMatchObject({ code: "GitHubUnavailable", retryable: true });
    expect(err.message).toContain("DNS lookup of github.example.invalid failed");
  });

  it("reports every exchange to onRequest with its route, status and duration, failures as status 0", async () => {
    github.on("POST", mintPath(1), { status: 201, body: tokenBody() });
    github.on("GET", "/app/installations/9", () => "reset");
    const slow: Fetch = async (url, init) => {
      const res = await undiciFetch(url, init);
      clock.advance(25);
      return res;
    };
    const seen: RequestInfo[] = [];
    const c = client({ fetch: slow, onRequest: (info) => seen.push(info) });
    await c.mintToken(app, 1);
    await caught(c.getInstallation(app, 9));
    expect(seen).toEqual([
      { route: "apps/create-installation-access-token", method: "POST", status: 201, durationMs: 25 },
      { route: "apps/get-installation", method: "GET", status: 0, durationMs: 0 },
    ]);
  });
});

describe("No error message carries a token, a JWT or key material", () => {
  const token = `ghs_12345_eyJhbGciOiJSUzI1NiJ9.${"x".repeat(300)}.sig_nature`;
  /** The worst case: GitHub (or a proxy) echoing the credentials it was sent. */
  const echo = (status: number) => (req: { headers: { authorization?: string | undefined } }) =>
    githubError(status, `rejected ${req.headers.authorization ?? ""} for ${token}`);

  it.each([400, 401, 403, 404, 422, 429, 500])("when GitHub echoes them in a %i", async (status) => {
    github.on("POST", mintPath(1), echo(status));
    github.on("DELETE", "/installation/token", echo(status === 401 ? 403 : status));
    const errors = [await caught(client().mintToken(app, 1)), await caught(client().revokeToken(token))];
    const jwts = github.requests.map((r) => String(r.headers.authorization).replace(/^(Bearer|token) /, ""));
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    for (const err of errors) {
      for (const secret of [...jwts, token, pem.slice(40, 80)]) {
        expect(err.message).not.toContain(secret.slice(0, 24));
        expect(err.message).not.toContain(secret.slice(-24));
      }
      expect(err.message).not.toMatch(/eyJ[A-Za-z0-9_-]{8,}|ghs_[A-Za-z0-9._]{8,}/);
    }
  });
});

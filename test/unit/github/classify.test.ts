import { describe, expect, it } from "vitest";
import type { ErrorCode } from "../../../src/core/errors.ts";
import {
  classifyGitHubError,
  classifyNetworkError,
  type GitHubErrorContext,
  githubMessage,
} from "../../../src/github/classify.ts";

const now = Date.parse("2026-11-24T12:00:00Z");
const mint: GitHubErrorContext = {
  route: "apps/create-installation-access-token",
  method: "POST",
  path: "/app/installations/1/access_tokens",
  now,
  issuer: 12345,
  installation: { id: 1 },
};
const body = (message: string) => ({ message, documentation_url: "https://docs.github.com/rest" });
const secondary = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

interface Row {
  status: number;
  headers?: Record<string, string>;
  body: unknown;
  context?: Partial<GitHubErrorContext>;
  code: ErrorCode;
  retryAt?: number;
  says?: string;
}

describe("classifyGitHubError", () => {
  it.each<[string, Row]>([
    [
      "a JWT GitHub cannot decode",
      {
        status: 401,
        body: body("A JSON web token could not be decoded"),
        code: "JWTRejected",
        says: "private key",
      },
    ],
    [
      "an exp too far ahead",
      {
        status: 401,
        body: body("'Expiration time' claim ('exp') is too far in the future"),
        code: "JWTRejected",
        says: "clock",
      },
    ],
    [
      "an exp in the past",
      {
        status: 401,
        body: body(
          "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        ),
        code: "JWTRejected",
        says: "clock",
      },
    ],
    [
      "an iat in the future",
      {
        status: 401,
        body: body(
          "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        ),
        code: "JWTRejected",
        says: "clock",
      },
    ],
    [
      "a dead token",
      { status: 401, body: body("Bad credentials"), code: "JWTRejected", says: "expired or revoked" },
    ],
    [
      "an unknown App id",
      {
        status: 404,
        body: body("Integration not found"),
        code: "JWTRejected",
        says: "no App with App id 12345",
      },
    ],
    [
      "an unknown client id",
      {
        status: 404,
        body: body("Integration not found"),
        context: { issuer: "Iv23liNope" },
        code: "JWTRejected",
        says: "client id Iv23liNope",
      },
    ],
    [
      "an unknown installation id",
      {
        status: 404,
        body: body("Not Found"),
        code: "InstallationNotFound",
        says: "installation 1 does not exist",
      },
    ],
    [
      "an owner without the App",
      {
        status: 404,
        body: body("Not Found"),
        context: {
          route: "apps/get-user-installation",
          path: "/users/acme/installation",
          installation: { owner: "acme" },
        },
        code: "InstallationNotFound",
        says: "not installed on account acme",
      },
    ],
    [
      "a repository without the App",
      {
        status: 404,
        body: body("Not Found"),
        context: {
          route: "apps/get-repo-installation",
          path: "/repos/acme/x/installation",
          installation: { repository: "acme/x" },
        },
        code: "InstallationNotFound",
        says: "not installed on repository acme/x",
      },
    ],
    [
      "a 404 on GET /app (wrong API URL)",
      {
        status: 404,
        body: "<!DOCTYPE html><html>Not found</html>",
        context: { route: "apps/get-authenticated", method: "GET", path: "/app", installation: undefined },
        code: "InvalidSpec",
        says: "https://HOST/api/v3",
      },
    ],
    [
      "a suspended installation",
      {
        status: 403,
        body: body("This installation has been suspended"),
        code: "InstallationSuspended",
        says: "suspended",
      },
    ],
    [
      "a permission not granted",
      {
        status: 422,
        body: body("The permissions requested are not granted to this installation."),
        code: "PermissionsNotGranted",
      },
    ],
    [
      "a permission level above the grant",
      {
        status: 422,
        body: body("The level of access for permissions requested are not granted to this installation."),
        code: "PermissionsNotGranted",
      },
    ],
    [
      "a repository not covered",
      {
        status: 422,
        body: body(
          "There is at least one repository that does not exist or is not accessible to the parent installation.",
        ),
        code: "RepositoriesNotGranted",
      },
    ],
    [
      "too many repositories",
      {
        status: 422,
        body: body("Too many repositories: the maximum is 500."),
        code: "RepositoriesNotGranted",
      },
    ],
    ["another 422", { status: 422, body: body("Validation Failed"), code: "InvalidSpec" }],
    ["a body GitHub cannot parse", { status: 400, body: body("Problems parsing JSON"), code: "InvalidSpec" }],
    [
      "a primary limit (403, remaining 0)",
      {
        status: 403,
        headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now / 1000 + 900) },
        body: body("API rate limit exceeded for installation ID 1."),
        code: "RateLimited",
        retryAt: now + 900_000,
        says: "primary rate limit",
      },
    ],
    [
      "a primary limit (429, remaining 0)",
      {
        status: 429,
        headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now / 1000 + 60) },
        body: body("API rate limit exceeded for installation ID 1."),
        code: "RateLimited",
        retryAt: now + 60_000,
      },
    ],
    [
      "a primary limit without a reset header",
      {
        status: 403,
        headers: { "x-ratelimit-remaining": "0" },
        body: body("API rate limit exceeded"),
        code: "RateLimited",
        retryAt: now + 60_000,
      },
    ],
    [
      "a secondary limit with retry-after",
      {
        status: 403,
        headers: { "retry-after": "30", "x-ratelimit-remaining": "4000" },
        body: body(secondary),
        code: "RateLimited",
        retryAt: now + 30_000,
        says: "secondary rate limit",
      },
    ],
    [
      "a secondary limit without retry-after (wait a minute)",
      { status: 429, body: body(secondary), code: "RateLimited", retryAt: now + 60_000 },
    ],
    [
      "a secondary limit without retry-after, with --secondary-rate-limit-wait 5m",
      {
        status: 403,
        body: body(secondary),
        code: "RateLimited",
        retryAt: now + 300_000,
        context: { secondaryWaitMs: 300_000 },
      },
    ],
    [
      "a bare 429 with retry-after",
      { status: 429, headers: { "retry-after": "5" }, body: "", code: "RateLimited", retryAt: now + 5_000 },
    ],
    [
      "another 403",
      {
        status: 403,
        body: body("Resource not accessible by integration"),
        code: "JWTRejected",
        says: "Resource not accessible by integration",
      },
    ],
    ["a 500", { status: 500, body: body("Server Error"), code: "GitHubUnavailable" }],
    ["a 502 HTML page", { status: 502, body: "<html>Bad gateway</html>", code: "GitHubUnavailable" }],
    [
      "a 504",
      { status: 504, body: body("We couldn't respond to your request in time."), code: "GitHubUnavailable" },
    ],
    ["an unexpected 409", { status: 409, body: body("Conflict"), code: "GitHubUnavailable" }],
  ])("%s", (_case, row) => {
    const context = { ...mint, ...row.context };
    const err = classifyGitHubError(row.status, row.headers ?? {}, row.body, context);
    expect(err.code).toBe(row.code);
    expect(err.status).toBe(row.status);
    expect(err.retryAt).toBe(row.retryAt);
    expect(err.retryable).toBe(row.code === "RateLimited" || row.code === "GitHubUnavailable");
    // A body that is not GitHub's JSON is never quoted, and not attributed to GitHub.
    const fromGitHub = typeof row.body !== "string" || row.body === "";
    expect(err.message).toContain(
      fromGitHub
        ? `GitHub answered ${row.status}`
        : `HTTP ${row.status} from the GitHub API (not a GitHub API answer)`,
    );
    expect(err.message).toContain(`${context.method} ${context.path}`);
    if (row.says) expect(err.message).toContain(row.says);
    const { message } = githubMessage(row.body);
    if (message) expect(err.message).toContain(message.slice(0, 40));
  });

  it("accepts fetch Headers as well as a plain record", () => {
    const headers = new Headers({
      "x-ratelimit-remaining": "0",
      "x-ratelimit-reset": String(now / 1000 + 10),
    });
    expect(classifyGitHubError(403, headers, body("API rate limit exceeded"), mint).retryAt).toBe(
      now + 10_000,
    );
  });

  it("reads retry-after given as an HTTP date", () => {
    const at = new Date(now + 120_000).toUTCString();
    expect(classifyGitHubError(429, { "retry-after": at }, "", mint).retryAt).toBe(now + 120_000);
  });

  it("appends the messages of a validation error's errors", () => {
    const err = classifyGitHubError(
      422,
      {},
      {
        message: "Validation Failed",
        errors: [{ resource: "Token", code: "invalid", message: "bad repository_ids" }],
      },
      mint,
    );
    expect(err.message).toContain("Validation Failed; bad repository_ids");
  });

  it.each([
    ["a classic token", "ghs_16C7e42F292c6912E7710c838347Ae178B4a"],
    ["a stateless token", `ghs_12345_eyJhbGciOiJSUzI1NiJ9.${"e".repeat(200)}.${"s".repeat(40)}`],
    ["a JWT", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjEyMzQ1fQ.c2lnbmF0dXJlc2lnbmF0dXJl"],
    ["an Authorization header", "Authorization: Bearer abcdefghijklmnop"],
  ])("never repeats %s GitHub might echo", (_case, secret) => {
    const err = classifyGitHubError(401, {}, body(`Bad credentials for ${secret}`), mint);
    expect(err.message).not.toContain(secret.slice(-16));
  });
});

describe("classifyNetworkError", () => {
  const ctx = { route: "apps/get-authenticated", method: "GET", path: "/app", timeoutMs: 2500 };
  const failed = (code: string, message = code) =>
    new TypeError("fetch failed", { cause: Object.assign(new Error(message), { code }) });

  it.each<[string, unknown, string]>([
    [
      "a timeout",
      new DOMException("The operation was aborted due to timeout", "TimeoutError"),
      "no answer within 2500 ms",
    ],
    [
      "a DNS failure",
      failed("ENOTFOUND", "getaddrinfo ENOTFOUND ghe.example"),
      "DNS lookup of ghe.example failed",
    ],
    ["a temporary DNS failure", failed("EAI_AGAIN"), "DNS lookup of ghe.example failed"],
    ["a refused connection", failed("ECONNREFUSED"), "connection refused"],
    ["a reset connection", failed("ECONNRESET"), "connection reset"],
    ["an untrusted certificate", failed("UNABLE_TO_VERIFY_LEAF_SIGNATURE"), "CA bundle"],
    ["a self-signed certificate", failed("DEPTH_ZERO_SELF_SIGNED_CERT"), "CA bundle"],
    [
      "one failure of several addresses",
      new TypeError("fetch failed", {
        cause: new AggregateError([Object.assign(new Error("x"), { code: "ECONNREFUSED" })], "all failed"),
      }),
      "connection refused",
    ],
    ["anything else", new Error("socket hang up"), "socket hang up"],
  ])("is GitHubUnavailable for %s", (_case, err, says) => {
    const e = classifyNetworkError(err, { ...ctx, url: "https://ghe.example/api/v3/app" });
    expect(e).toMatchObject({ code: "GitHubUnavailable", retryable: true, status: undefined });
    expect(e.message).toContain(says);
    expect(e.message).toContain("GET /app");
    expect(e.cause).toBe(err);
  });

  it("never repeats a proxy password or a token from the failure", () => {
    const err = new Error(
      "connect to http://user:hunter2secret@proxy:3128 failed sending token ghs_abcdefghijklmnopqrstuvwxyz012345",
    );
    const e = classifyNetworkError(err, { ...ctx, url: "https://api.github.com/app" });
    expect(e.message).not.toContain("hunter2secret");
    expect(e.message).not.toContain("ghs_abcdefghij");
  });
});

describe("What classifyGitHubError repeats from an answer", () => {
  const api = { ...mint, baseUrl: "https://ghe.example/api/v3" };

  it.each([
    ["an HTML page", "<html><body>Bad gateway at lb-7.internal</body></html>"],
    ["a proxy's text", "upstream connect error: 10.0.0.5:443 reset\nX-Injected: yes"],
    ["JSON without a message", '{"error":"db.internal.corp unavailable"}'],
    ["a JSON array", '["internal"]'],
  ])("quotes nothing of %s: HTTP <status> from <host>", (_case, text) => {
    const err = classifyGitHubError(502, {}, text, api);
    expect(err.code).toBe("GitHubUnavailable");
    expect(err.message).toBe(
      "GitHub is unavailable: HTTP 502 from ghe.example (not a GitHub API answer) to POST /app/installations/1/access_tokens",
    );
  });

  it("quotes GitHub's JSON message with control characters made spaces, cut to 200 characters", () => {
    const { message, json } = githubMessage(
      JSON.stringify({ message: `Server\r\nError\u0000\u001b[31m\u007f${"m".repeat(400)}` }),
    );
    expect(json).toBe(true);
    expect(message.startsWith("Server Error [31m m")).toBe(true);
    expect(message).toHaveLength(200);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting their absence
    expect(message).not.toMatch(/[\u0000-\u001f\u007f]/);
  });

  it("redacts before cutting, so no token's head survives at the 200th character", () => {
    const token = `ghs_${"T".repeat(36)}`;
    const { message } = githubMessage({ message: `${"p".repeat(189)} ${token}` });
    expect(message).not.toContain("ghs_");
    expect(message).not.toContain("TTTT");
  });

  it("refuses a moved repository (301) as InstallationNotFound, without following or quoting it", () => {
    const err = classifyGitHubError(
      301,
      { location: "https://ghe.example/api/v3/repositories/99/installation" },
      { message: "Moved Permanently", url: "https://ghe.example/api/v3/repositories/99/installation" },
      {
        ...api,
        route: "apps/get-repo-installation",
        method: "GET",
        path: "/repos/acme/legacy-tool/installation",
        installation: { repository: "acme/legacy-tool" },
      },
    );
    expect(err).toMatchObject({ code: "InstallationNotFound", status: 301, retryable: false });
    expect(err.message).toBe(
      "repository acme/legacy-tool has moved (GitHub answered 301); name its new owner/repository (GET /repos/acme/legacy-tool/installation)",
    );
  });

  it.each<[string, string | undefined, string]>([
    ["another host", "https://169.254.169.254/latest/meta-data", "another location"],
    ["another scheme on the same host", "http://ghe.example/api/v3/app", "another location"],
    ["credentials on the same host", "https://user:pw@ghe.example/api/v3/app", "another location"],
    ["no Location", undefined, "another location"],
    [
      "a path on the same origin",
      "/api/v3/app/installations/2/access_tokens",
      "/api/v3/app/installations/2/access_tokens",
    ],
    ["a relative path", "tokens?page=2", "/api/v3/tokens?page=2"],
  ])(
    "refuses any other redirect as InvalidResponse, naming its target only on the same origin: %s",
    (_case, location, target) => {
      const err = classifyGitHubError(302, location === undefined ? {} : { location }, "", api);
      expect(err).toMatchObject({ code: "InvalidResponse", status: 302, retryable: true });
      expect(err.message).toBe(
        `ghe.example answered a redirect (302) to ${target}; ghat does not follow redirects (POST /app/installations/1/access_tokens)`,
      );
    },
  );
});

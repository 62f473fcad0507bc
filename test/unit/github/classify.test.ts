import { describe, expect, it } from "vitest";
import { classifyGitHubError } from "../../../src/github/errors.ts";

const now = Date.parse("2026-11-24T12:00:00Z");
const ctx = {
  route: "apps/create-installation-access-token",
  method: "POST",
  path: "/app/installations/1/access_tokens",
  now,
};
const headers = (h: Record<string, string>) => (name: string) => h[name] ?? null;

describe("classifyGitHubError", () => {
  it.each<[number, Record<string, string>, string, string, boolean, number | undefined]>([
    [401, {}, "A JSON web token could not be decoded", "JWTRejected", false, undefined],
    [401, {}, "'Expiration time' claim ('exp') is too far in the future", "JWTRejected", false, undefined],
    [404, {}, "Integration not found", "JWTRejected", false, undefined],
    [404, {}, "Not Found", "InstallationNotFound", false, undefined],
    [403, {}, "This installation has been suspended", "InstallationSuspended", false, undefined],
    [
      422,
      {},
      "The permissions requested are not granted to this installation.",
      "PermissionsNotGranted",
      false,
      undefined,
    ],
    [
      422,
      {},
      "The level of access for permissions requested are not granted to this installation.",
      "PermissionsNotGranted",
      false,
      undefined,
    ],
    [
      422,
      {},
      "There is at least one repository that does not exist or is not accessible to the parent installation.",
      "RepositoriesNotGranted",
      false,
      undefined,
    ],
    [
      403,
      { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now / 1000 + 900) },
      "API rate limit exceeded for installation ID 1.",
      "RateLimited",
      true,
      now + 900_000,
    ],
    [
      429,
      { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now / 1000 + 60) },
      "API rate limit exceeded for installation ID 1.",
      "RateLimited",
      true,
      now + 60_000,
    ],
    [
      403,
      { "retry-after": "30" },
      "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
      "RateLimited",
      true,
      now + 30_000,
    ],
    [
      429,
      {},
      "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
      "RateLimited",
      true,
      now + 60_000,
    ],
    [500, {}, "Server Error", "GitHubUnavailable", true, undefined],
    [502, {}, "", "GitHubUnavailable", true, undefined],
    [504, {}, "We couldn't respond to your request in time.", "GitHubUnavailable", true, undefined],
  ])("%i %j %s → %s", (status, h, message, code, retryable, retryAt) => {
    const err = classifyGitHubError(status, headers(h), message, ctx);
    expect(err.code).toBe(code);
    expect(err.retryable).toBe(retryable);
    expect(err.status).toBe(status);
    expect(err.retryAt).toBe(retryAt);
    expect(err.message).toContain(String(status));
    expect(err.message).toContain("/app/installations/1/access_tokens");
  });

  it("never carries a credential GitHub might echo", () => {
    const err = classifyGitHubError(
      401,
      headers({}),
      "Bad credentials for token ghs_abcdefghijklmnopqrstuvwxyz0123456789",
      ctx,
    );
    expect(err.message).not.toContain("ghs_abcdefghij");
  });
});

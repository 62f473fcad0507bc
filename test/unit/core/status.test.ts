import { describe, expect, it } from "vitest";
import type { GitHubAppToken } from "../../../src/api/githubapptoken.ts";
import { type Grant, grantShortfall, invalidSpecStatus, statusFor } from "../../../src/core/status.ts";

const now = Date.parse("2026-11-24T12:00:00Z");
const hour = 3_600_000;
const token = (status?: GitHubAppToken["status"]): Pick<GitHubAppToken, "metadata" | "spec" | "status"> => ({
  metadata: { name: "ci", namespace: "team", generation: 3 },
  spec: {
    appRef: { kind: "GitHubApp", name: "app" },
    installation: { owner: "acme" },
    permissions: { contents: "read" },
    repositories: ["app"],
    secrets: [{ name: "ci-token", format: "token" }],
    refreshPolicy: { refreshBefore: "20m", minRemainingLifetime: "10m" },
    sharing: "Namespace",
  },
  ...(status ? { status } : {}),
});
const grant: Grant = {
  token: "ghs_x",
  expiresAt: now + hour,
  installationId: 42,
  owner: "acme",
  permissions: { contents: "read", metadata: "read" },
  repositorySelection: "selected",
  repositories: ["acme/app"],
};
const current = { expiresAt: now + hour, refreshAt: now + 40 * 60_000 };
const ready = (s: Record<string, unknown>) =>
  (s.conditions as { type: string; status: string; reason: string; message: string }[]).find(
    (c) => c.type === "Ready",
  );
const issued = statusFor({
  token: token(),
  current,
  grant,
  why: "NoToken",
  owner: undefined,
  failures: 0,
  now,
}).status;

describe("statusFor", () => {
  it.each([
    [
      "a token held, no error",
      { current },
      "True",
      "Issued",
      /holds a token valid until 2026-11-24T13:00:00Z/,
    ],
    [
      "an error while a token is held",
      { current, error: { code: "GitHubUnavailable" as const, message: "GitHub answered 503" } },
      "True",
      "GitHubUnavailable",
      /GitHub answered 503\. The Secrets still hold a token valid until/,
    ],
    [
      "an error with nothing held",
      {
        current: undefined,
        error: { code: "AppNotFound" as const, message: 'GitHubApp "x" does not exist' },
      },
      "False",
      "AppNotFound",
      /does not exist/,
    ],
  ])("Ready for %s", (_what, input, status, reason, message) => {
    const r = ready(statusFor({ token: token(), owner: undefined, failures: 1, now, ...input }).status);
    expect(r).toMatchObject({ status, reason });
    expect(r?.message).toMatch(message);
  });

  it("reports what was granted and the expiry, and counts failures only while failing", () => {
    expect(issued).toMatchObject({
      observedGeneration: 3,
      installationId: 42,
      owner: "acme",
      repositories: ["acme/app"],
      expiresAt: "2026-11-24T13:00:00Z",
      refreshAt: "2026-11-24T12:40:00Z",
      secrets: ["ci-token"],
    });
    expect(issued.failures).toBeUndefined();
    const failing = statusFor({
      token: token(),
      current,
      owner: undefined,
      failures: 4,
      now,
      error: { code: "RateLimited", message: "m" },
    });
    expect(failing.status.failures).toBe(4);
  });

  it.each([
    ["a first mint", "NoToken", undefined, undefined],
    ["a re-scoped mint", "ScopeChanged", ["True", "Issued"], undefined],
    ["a refresh", "RefreshDue", ["True", "Issued"], undefined],
    ["a first mint already Issued", "NoToken", ["True", "Issued"], undefined],
    [
      "a mint after a failure",
      "RefreshDue",
      ["False", "GitHubUnavailable"],
      { type: "Normal", reason: "Issued" },
    ],
    [
      "a first mint after a failure",
      "NoToken",
      ["False", "AppNotFound"],
      { type: "Normal", reason: "Issued" },
    ],
  ] as const)(
    "raises a Normal event for %s only when it recovers from a failure",
    (_what, why, was, event) => {
      const previous = was
        ? {
            conditions: [
              { type: "Ready", status: was[0], reason: was[1], message: "m", lastTransitionTime: "x" },
            ],
          }
        : undefined;
      const r = statusFor({
        token: token(previous as GitHubAppToken["status"]),
        current,
        grant,
        why,
        owner: undefined,
        failures: 0,
        now,
      });
      expect(r.event && { type: r.event.type, reason: r.event.reason }).toEqual(event);
    },
  );

  it("raises a Warning when Ready's reason changes to an error, not when it stays", () => {
    const error = { code: "GitHubUnavailable" as const, message: "GitHub answered 503" };
    const first = statusFor({ token: token(), current, error, owner: undefined, failures: 1, now });
    expect(first.event).toEqual({
      type: "Warning",
      reason: "GitHubUnavailable",
      message: "GitHub answered 503",
    });
    const again = statusFor({
      token: token(first.status as GitHubAppToken["status"]),
      current,
      error,
      owner: undefined,
      failures: 2,
      now,
    });
    expect(again.event).toBeUndefined();
  });

  it("writes Delivered only with a token and no error", () => {
    const delivered = { status: "True" as const, reason: "Delivered" as const, message: "files" };
    const types = (s: Record<string, unknown>) => (s.conditions as { type: string }[]).map((c) => c.type);
    expect(
      types(statusFor({ token: token(), current, delivered, owner: undefined, failures: 0, now }).status),
    ).toContain("Delivered");
    expect(
      types(
        statusFor({
          token: token(),
          current,
          delivered,
          owner: undefined,
          failures: 1,
          now,
          error: { code: "RateLimited", message: "m" },
        }).status,
      ),
    ).not.toContain("Delivered");
  });

  it("caps repositories and messages from remote or user input", () => {
    const many = Array.from({ length: 300 }, (_, i) => `acme/r${i}`);
    const s = statusFor({
      token: token(),
      current,
      grant: { ...grant, repositories: many },
      owner: undefined,
      failures: 0,
      now,
    }).status;
    expect(s.repositories).toHaveLength(100);
    const long = ready(
      statusFor({
        token: token(),
        current: undefined,
        owner: undefined,
        failures: 1,
        now,
        error: { code: "InvalidSpec", message: "x".repeat(10_000) },
      }).status,
    );
    expect(long?.message.length).toBeLessThan(2200);
  });
});

describe("grantShortfall", () => {
  it.each([
    [{ contents: "read" }, { contents: "write" }, []],
    [{ contents: "write" }, { contents: "read" }, ["contents: read instead of write"]],
    [{ constructor: "read" }, {}, ["constructor not granted"]],
    [{ issues: "read" }, { contents: "read" }, ["issues not granted"]],
  ])("asked %j, granted %j", (asked, granted, expected) => {
    expect(
      grantShortfall(
        { permissions: asked as Record<string, "read">, repositories: undefined },
        { ...grant, permissions: granted },
      ),
    ).toEqual(expected);
  });
});

describe("invalidSpecStatus", () => {
  it("says InvalidSpec once, and nothing when it already says so", () => {
    const first = invalidSpecStatus(undefined, "spec.secrets: Required", 2, now);
    expect(first?.conditions[0]).toMatchObject({
      reason: "InvalidSpec",
      message: "spec is invalid: spec.secrets: Required",
    });
    expect(invalidSpecStatus(first?.conditions, "spec.secrets: Required", 2, now + 1000)).toBeUndefined();
  });
});

import { describe, expect, it } from "vitest";
import type { ClusterAppPolicy } from "../../../src/api/githubapp.ts";
import { evaluatePolicy, globMatch, type PolicyRequest, selectorMatches } from "../../../src/core/policy.ts";

const policy: ClusterAppPolicy = {
  namespaces: { names: ["team-a"], selector: { matchLabels: { "ghat.dev/github-access": "true" } } },
  installations: { owners: ["acme"], ids: [77] },
  repositories: ["acme/app", "acme/svc-*"],
  maxPermissions: { contents: "write", issues: "read" },
};

function request(overrides: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    namespace: "team-a",
    namespaceLabels: {},
    installation: { owner: "acme" },
    permissions: { contents: "read" },
    repositories: ["app"],
    repositoryIds: undefined,
    ...overrides,
  };
}

describe("evaluatePolicy", () => {
  it("allows a request inside every rule", () => {
    expect(evaluatePolicy("org", policy, request())).toEqual({ allowed: true });
    expect(evaluatePolicy("org", policy, request({ repositories: ["svc-billing", "app"] }))).toEqual({
      allowed: true,
    });
    expect(
      evaluatePolicy("org", policy, request({ installation: { id: 77 }, resolvedOwner: "acme" })),
    ).toEqual({ allowed: true });
    expect(evaluatePolicy("org", policy, request({ installation: { repository: "acme/app" } }))).toEqual({
      allowed: true,
    });
  });

  it("allows nothing with an empty policy", () => {
    expect(evaluatePolicy("org", {}, request())).toMatchObject({ allowed: false, rule: "namespaces" });
  });

  it.each<[string, Partial<PolicyRequest>, string, string]>([
    ["another namespace", { namespace: "team-b" }, "namespaces", 'namespace "team-b"'],
    ["another owner", { installation: { owner: "evil" } }, "installations", 'installations of "evil"'],
    ["another installation id", { installation: { id: 78 } }, "installations", "installation id 78"],
    [
      "an id-named installation of another owner",
      { installation: { id: 77 }, resolvedOwner: "evil" },
      "repositories",
      '"evil/app"',
    ],
    ["a repository outside the patterns", { repositories: ["secret"] }, "repositories", '"acme/secret"'],
    ["all repositories", { repositories: undefined }, "repositories", "without explicit repositories"],
    ["repository ids", { repositoryIds: [1] }, "repositories", "repositoryIds"],
    [
      "a permission above the ceiling",
      { permissions: { issues: "write" } },
      "maxPermissions",
      "issues: write (at most read)",
    ],
    [
      "a permission not in the ceiling",
      { permissions: { administration: "read" } },
      "maxPermissions",
      '"administration"',
    ],
    ["all permissions", { permissions: undefined }, "maxPermissions", "without explicit permissions"],
  ])("refuses %s and names the rule", (_what, overrides, rule, text) => {
    const result = evaluatePolicy("org", policy, request(overrides));
    expect(result).toMatchObject({ allowed: false, rule });
    expect(result.allowed ? "" : result.message).toContain(text);
    expect(result.allowed ? "" : result.message).toContain(`policy.${rule}`);
  });

  it("admits a namespace by label selector", () => {
    const r = request({ namespace: "team-c", namespaceLabels: { "ghat.dev/github-access": "true" } });
    expect(evaluatePolicy("org", policy, r).allowed).toBe(true);
  });

  it("allows everything only when the policy says so explicitly", () => {
    const open: ClusterAppPolicy = {
      namespaces: { selector: {} },
      installations: { owners: ["*"] },
      repositories: ["*/*"],
      maxPermissions: { contents: "write" },
    };
    expect(
      evaluatePolicy("org", open, request({ repositories: undefined, installation: { id: 5 } })).allowed,
    ).toBe(true);
  });
});

describe("globMatch", () => {
  it.each([
    ["acme/*", "acme/app", true],
    ["acme/*", "acme/app/x", false],
    ["acme/svc-*", "ACME/svc-billing", true],
    ["acme/svc-*", "acme/web", false],
    ["*/*", "x/y", true],
    ["acme/ap?", "acme/app", true],
    ["acme/a.p", "acme/abp", false],
  ])("%s matches %s: %s", (p, t, expected) => expect(globMatch(p, t)).toBe(expected));
});

describe("selectorMatches", () => {
  const labels = { team: "a", env: "prod" };
  it.each([
    [{}, true],
    [{ matchLabels: { team: "a" } }, true],
    [{ matchLabels: { team: "b" } }, false],
    [{ matchExpressions: [{ key: "env", operator: "In" as const, values: ["prod", "stage"] }] }, true],
    [{ matchExpressions: [{ key: "env", operator: "NotIn" as const, values: ["prod"] }] }, false],
    [{ matchExpressions: [{ key: "team", operator: "Exists" as const }] }, true],
    [{ matchExpressions: [{ key: "team", operator: "DoesNotExist" as const }] }, false],
    [{ matchExpressions: [{ key: "missing", operator: "NotIn" as const, values: ["x"] }] }, true],
  ])("selector %j matches: %s", (selector, expected) => {
    expect(selectorMatches(selector, labels)).toBe(expected);
  });
});

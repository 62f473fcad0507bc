import { describe, expect, it } from "vitest";
import type { ClusterAppPolicy } from "../../../src/api/githubapp.ts";
import {
  evaluatePolicy,
  type Granted,
  globMatch,
  grantedWithinPolicy,
  type PolicyRequest,
  selectorMatches,
} from "../../../src/core/policy.ts";

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

describe("evaluatePolicy on input admission did not check", () => {
  // JSON.parse makes "__proto__" an own property, as a decoded API object would.
  const own = (json: string): Record<string, string> => JSON.parse(json);

  it.each<[string, PolicyRequest["permissions"], string]>([
    ["constructor", { constructor: "read" }, 'unknown permission "constructor"'],
    ["__proto__", own('{"__proto__": "read"}'), 'unknown permission "__proto__"'],
    ["toString", { toString: "admin" }, 'unknown permission "toString"'],
    ["hasOwnProperty", { contents: "read", hasOwnProperty: "read" }, 'unknown permission "hasOwnProperty"'],
    ["a level above admin", { contents: "owner" }, "contents: owner (levels are read, write and admin)"],
    ["a level named like a prototype key", { contents: "constructor" }, "contents: constructor"],
    ["an upper-case level", { contents: "READ" }, "contents: READ"],
    ["only undefined levels", { contents: undefined }, "without explicit permissions"],
  ])("refuses %s", (_what, permissions, text) => {
    const result = evaluatePolicy("org", policy, request({ permissions }));
    expect(result).toMatchObject({ allowed: false, rule: "maxPermissions" });
    expect(result.allowed ? "" : result.message).toContain(text);
  });

  it.each<[string, Record<string, string>, string]>([
    ["a level that is not one", { contents: "owner" }, 'the ceiling "owner" is not a level'],
    ["an inherited name", {}, 'permission "contents"'],
  ])("refuses against a ceiling with %s", (_what, maxPermissions, text) => {
    const bad = { ...policy, maxPermissions } as unknown as ClusterAppPolicy;
    const result = evaluatePolicy("org", bad, request({ permissions: { contents: "read" } }));
    expect(result).toMatchObject({ allowed: false, rule: "maxPermissions" });
    expect(result.allowed ? "" : result.message).toContain(text);
  });

  it("compares levels in the closed order read < write < admin", () => {
    const ceiling: ClusterAppPolicy = { ...policy, maxPermissions: { contents: "write", members: "admin" } };
    const verdict = (permissions: Record<string, string>) =>
      evaluatePolicy("org", ceiling, request({ permissions })).allowed;
    expect(verdict({ contents: "read" })).toBe(true);
    expect(verdict({ contents: "write" })).toBe(true);
    expect(verdict({ contents: "admin" })).toBe(false);
    expect(verdict({ members: "admin" })).toBe(true);
  });

  it("does not take a label the namespace lacks from Object.prototype", () => {
    const p: ClusterAppPolicy = {
      ...policy,
      namespaces: { selector: { matchLabels: { constructor: "x" } } },
    };
    expect(evaluatePolicy("org", p, request({ namespace: "team-z" })).allowed).toBe(false);
  });
});

describe("grantedWithinPolicy", () => {
  const granted = (overrides: Partial<Granted> = {}): Granted => ({
    owner: "acme",
    installationId: 99,
    repositories: ["acme/app"],
    ...overrides,
  });

  it.each<[string, Partial<Granted>]>([
    ["the asked repositories of an allowed owner", {}],
    ["logins in another case", { owner: "ACME", repositories: ["Acme/App", "acme/SVC-billing"] }],
    ["an allowed installation id of any owner", { installationId: 77, owner: "other", repositories: [] }],
    ["an allowed id whose owner GitHub did not say", { installationId: 77, owner: undefined }],
    ["no repositories at all", { repositories: [] }],
    ["permissions inside the ceiling", { permissions: { contents: "write", issues: "read" } }],
    [
      "the metadata: read GitHub adds to every token",
      { permissions: { contents: "read", metadata: "read" } },
    ],
  ])("allows %s", (_what, overrides) => {
    expect(grantedWithinPolicy(policy, granted(overrides))).toEqual({ allowed: true });
  });

  it.each<[string, Partial<Granted>, string, string]>([
    ["another owner", { owner: "evil", repositories: ["evil/app"] }, "installations", '"evil"'],
    ["an owner GitHub did not say", { owner: undefined }, "installations", "did not name"],
    ["a repository outside the globs", { repositories: ["acme/secret"] }, "repositories", '"acme/secret"'],
    [
      "one bad repository among good ones",
      { repositories: ["acme/app", "acme/web"] },
      "repositories",
      '"acme/web"',
    ],
    [
      "a repository of another account",
      { repositories: ["evil/app"] },
      "repositories",
      "outside the installation's account",
    ],
    ["every repository", { repositories: undefined }, "repositories", "*/*"],
    ["a name that is not owner/name", { repositories: ["acme/app/x"] }, "repositories", "not an owner/name"],
    ["a name without an owner", { repositories: ["app"] }, "repositories", "not an owner/name"],
    [
      "a permission above the ceiling",
      { permissions: { issues: "write" } },
      "maxPermissions",
      "issues: write",
    ],
    [
      "a permission outside the ceiling",
      { permissions: { administration: "read" } },
      "maxPermissions",
      '"administration"',
    ],
    ["metadata: write", { permissions: { metadata: "write" } }, "maxPermissions", '"metadata"'],
    [
      "an unknown permission",
      { permissions: { constructor: "read" } },
      "maxPermissions",
      "unknown permission",
    ],
    ["an unknown level", { permissions: { contents: "owner" } }, "maxPermissions", "contents: owner"],
  ])("refuses %s", (_what, overrides, rule, text) => {
    const result = grantedWithinPolicy(policy, granted(overrides));
    expect(result).toMatchObject({ allowed: false, rule });
    expect(result.allowed ? "" : result.reason).toContain(text);
  });

  it("allows every repository and any owner only when the policy says so", () => {
    const open: ClusterAppPolicy = { installations: { owners: ["*"] }, repositories: ["*/*"] };
    expect(grantedWithinPolicy(open, granted({ owner: undefined, repositories: undefined }))).toEqual({
      allowed: true,
    });
    expect(grantedWithinPolicy({}, granted())).toMatchObject({ allowed: false, rule: "installations" });
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
    ["acme/*", "acme/", true],
    ["acme/a*b*c", "acme/aXbYc", true],
    ["acme/a*b*c", "acme/aXbY", false],
    ["acme/*-svc", "acme/a-svc-b-svc", true],
    ["acme/**", "acme/x", true],
    ["acme/?", "acme/", false],
    ["acme/(x|y)", "acme/x", false],
    ["acme/[ab]", "acme/a", false],
  ])("%s matches %s: %s", (p, t, expected) => expect(globMatch(p, t)).toBe(expected));

  // A regular expression takes about 20 s on this; patterns may be up to 140 characters long.
  it("answers quickly for a pattern that would make a regular expression backtrack", () => {
    const start = performance.now();
    expect(globMatch(`acme/${"a*".repeat(6)}b`, `acme/${"a".repeat(100)}`)).toBe(false);
    expect(performance.now() - start).toBeLessThan(1_000);
  });
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

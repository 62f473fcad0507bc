import { describe, expect, it } from "vitest";
import { evaluatePolicy, selectorMatches } from "../../../src/core/policy.ts";

describe("evaluatePolicy", () => {
  const req = { namespace: "team-a", namespaceLabels: { team: "a", env: "prod" } };

  it("allows nothing when the policy names no namespace", () => {
    const result = evaluatePolicy("org-app", {}, req);
    expect(result).toMatchObject({ allowed: false, rule: "namespaces" });
    expect(result.allowed || result.message).toContain('does not allow namespace "team-a"');
  });

  it("allows a namespace listed by name", () => {
    expect(evaluatePolicy("org-app", { namespaces: { names: ["team-a"] } }, req)).toEqual({ allowed: true });
  });

  it("allows a namespace matched by the label selector and refuses one that is not", () => {
    const policy = { namespaces: { selector: { matchLabels: { team: "a" } } } };
    expect(evaluatePolicy("org-app", policy, req).allowed).toBe(true);
    expect(evaluatePolicy("org-app", policy, { namespace: "b", namespaceLabels: { team: "b" } }).allowed).toBe(false);
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

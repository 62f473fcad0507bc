import { describe, expect, it } from "vitest";
import { setCondition } from "../../../src/core/conditions.ts";

describe("setCondition", () => {
  const ready = { type: "Ready", status: "True" as const, reason: "Issued" as const, message: "ok" };

  it("adds a condition with the current time", () => {
    expect(setCondition([], ready, "T1", 3)).toEqual([
      { ...ready, lastTransitionTime: "T1", observedGeneration: 3 },
    ]);
  });

  it("keeps lastTransitionTime when only the reason or message changes", () => {
    const first = setCondition([], ready, "T1", 1);
    const next = setCondition(first, { ...ready, reason: "GitHubUnavailable", message: "503" }, "T2", 2);
    expect(next[0]).toMatchObject({
      reason: "GitHubUnavailable",
      lastTransitionTime: "T1",
      observedGeneration: 2,
    });
  });

  it("moves lastTransitionTime when the status changes and leaves other conditions alone", () => {
    const other = {
      type: "ScopeMatched",
      status: "True" as const,
      reason: "Matched",
      message: "",
      lastTransitionTime: "T0",
    };
    const next = setCondition(
      [other, ...setCondition([], ready, "T1", 1)],
      { ...ready, status: "False", reason: "RateLimited" },
      "T2",
      1,
    );
    expect(next).toHaveLength(2);
    expect(next[0]).toBe(other);
    expect(next[1]).toMatchObject({ status: "False", lastTransitionTime: "T2" });
  });
});

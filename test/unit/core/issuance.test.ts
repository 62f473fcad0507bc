import { describe, expect, it } from "vitest";
import { mintKeys, reusable, supersededBy, tooShort } from "../../../src/core/issuance.ts";

describe("supersededBy", () => {
  it.each([
    [[], undefined, []],
    [["a"], undefined, ["a"]],
    [["a"], "b", ["a", "b"]],
    [["a", "b"], "b", ["a", "b"]],
  ])("planned %j, lost %j", (planned, lost, expected) => {
    expect(supersededBy(planned, lost)).toEqual(expected);
  });
});

describe("reusable", () => {
  it.each([
    [2000, 1000, "t", [], true],
    [1000, 1000, "t", [], false],
    [2000, 1000, "t", ["t"], false],
  ])("refreshAt %d at %d, %s among %j", (refreshAt, now, candidate, superseded, expected) => {
    expect(reusable(refreshAt, now, candidate, superseded)).toBe(expected);
  });
});

describe("mintKeys", () => {
  it("counts App and installation budgets per namespace", () => {
    const a = mintKeys("team/ci", "team", "GitHubApp/x", 42);
    const b = mintKeys("other/ci", "other", "GitHubApp/x", 42);
    expect(a.app).not.toBe(b.app);
    expect(a.installation).not.toBe(b.installation);
    expect(a).toEqual({ token: "team/ci", app: "team|GitHubApp/x", installation: "team|GitHubApp/x#42" });
  });
});

describe("tooShort", () => {
  const now = Date.parse("2026-11-24T12:00:00Z");
  it.each([
    [now + 3_600_000, 600_000, false],
    [now + 600_000, 600_000, false],
    [now + 2_000, 600_000, true],
    [now - 1_000, 0, true],
  ])("expires %d with minimum %d", (expiresAt, min, short) => {
    expect(tooShort(expiresAt, now, min) !== undefined).toBe(short);
  });
});

import { describe, expect, it } from "vitest";
import type { GitHubAppToken } from "../../../src/api/githubapptoken.ts";
import { specFacts } from "../../../src/core/spec.ts";

const spec = (over: Partial<GitHubAppToken["spec"]>): GitHubAppToken["spec"] => ({
  appRef: { kind: "GitHubApp", name: "app" },
  installation: { owner: "acme" },
  secrets: [{ name: "t", format: "token" }],
  refreshPolicy: { refreshBefore: "20m", minRemainingLifetime: "10m" },
  sharing: "Namespace",
  ...over,
});

describe("specFacts", () => {
  it.each([
    [{}, false, 1_200_000, 600_000],
    [{ refreshPolicy: { refreshBefore: "59m59.999s", minRemainingLifetime: "59m59.998s" } }, true, 0, 0],
    [{ refreshPolicy: { refreshBefore: "10m", minRemainingLifetime: "10m" } }, true, 0, 0],
    [{ refreshPolicy: { refreshBefore: "2s", minRemainingLifetime: "1s" } }, false, 2_000, 1_000],
  ])("%j", (over, refused, before, min) => {
    const f = specFacts(spec(over as Partial<GitHubAppToken["spec"]>));
    expect(f.problems.length > 0).toBe(refused);
    expect(f.problems.every((p) => p.startsWith("refreshPolicy: "))).toBe(true);
    expect([f.refreshBeforeMs, f.minRemainingMs]).toEqual([before, min]);
  });
});

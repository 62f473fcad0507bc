import { describe, expect, it } from "vitest";
import type { SecretTarget } from "../../../src/api/githubapptoken.ts";
import { annotations, labels } from "../../../src/core/outputs.ts";
import { desiredSecrets, type Observed, type ObservedSecret, plan } from "../../../src/core/plan.ts";

const min = 60_000;
const now = Date.parse("2026-11-24T12:00:00Z");
const token = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";

function observed(overrides: Partial<Observed> = {}): Observed {
  return {
    now,
    tokenName: "ci",
    deleting: false,
    hasFinalizer: true,
    specProblems: [],
    appProblem: undefined,
    targets: [{ name: "ci-token", format: "token" }],
    secrets: new Map(),
    scopeHash: "scope-1",
    minRemainingMs: 10 * min,
    render: {
      host: "github.com",
      owner: "acme",
      repositories: [],
      tokenName: "ci",
      apiUrl: "https://api.github.com",
    },
    ...overrides,
  };
}

/** A Secret exactly as ghat would have written it for a token expiring at `expiresAt`. */
function written(
  o: Observed,
  opts: { expiresAt?: number; refreshAt?: number; token?: string } = {},
): Map<string, ObservedSecret> {
  const current = {
    token: opts.token ?? token,
    expiresAt: opts.expiresAt ?? now + 50 * min,
    refreshAt: opts.refreshAt ?? now + 30 * min,
  };
  return new Map(desiredSecrets(o, current).map((d) => [d.name, { ...d, ownedByToken: true }]));
}

describe("plan", () => {
  it("finalizes a GitHubAppToken being deleted before anything else", () => {
    expect(plan(observed({ deleting: true, specProblems: ["bad"] }))).toEqual({ action: "finalize" });
  });

  it("adds the finalizer first", () => {
    expect(plan(observed({ hasFinalizer: false }))).toEqual({ action: "addFinalizer" });
  });

  it("blocks on an invalid spec with every problem in the message", () => {
    expect(plan(observed({ specProblems: ["a", "b"] }))).toEqual({
      action: "blocked",
      code: "InvalidSpec",
      message: "a; b",
    });
  });

  it("blocks when the App is unusable, with its code", () => {
    const appProblem = { code: "InvalidPrivateKey" as const, message: "is an OpenSSH key" };
    expect(plan(observed({ appProblem }))).toMatchObject({ action: "blocked", code: "InvalidPrivateKey" });
  });

  it("withdraws a token a ClusterGitHubApp's policy no longer allows: revoke it and remove its Secrets", () => {
    const o = observed({ appProblem: { code: "NotPermitted", message: "policy says no" } });
    const decision = plan({ ...o, secrets: written(o) });
    expect(decision).toEqual({
      action: "withdraw",
      message: "policy says no",
      revoke: [token],
      secrets: ["ci-token"],
    });
    expect(plan(o)).toMatchObject({ action: "blocked", code: "NotPermitted" });
  });

  it("never overwrites a Secret it does not own", () => {
    const foreign: ObservedSecret = {
      name: "ci-token",
      type: "Opaque",
      labels: {},
      annotations: {},
      data: { token: "x" },
      ownedByToken: false,
    };
    const decision = plan(observed({ secrets: new Map([["ci-token", foreign]]) }));
    expect(decision).toMatchObject({ action: "blocked", code: "SecretConflict" });
    expect(decision.action === "blocked" && decision.message).toContain('"ci-token"');
  });

  it("mints when there is no Secret", () => {
    expect(plan(observed())).toMatchObject({ action: "mint", why: "NoToken" });
  });

  it("waits until refreshAt when the Secret holds a healthy token (restart safety)", () => {
    const o = observed();
    const decision = plan({ ...o, secrets: written(o) });
    expect(decision).toMatchObject({ action: "wait", until: now + 30 * min });
  });

  it("mints when the refresh time has come", () => {
    const o = observed();
    expect(plan({ ...o, secrets: written(o, { refreshAt: now - 1 }) })).toMatchObject({
      action: "mint",
      why: "RefreshDue",
    });
  });

  it("mints when the token is below the minimum remaining lifetime, whatever refreshAt says", () => {
    const o = observed();
    const secrets = written(o, { expiresAt: now + 5 * min, refreshAt: now + 4 * min });
    expect(plan({ ...o, secrets })).toMatchObject({ action: "mint", why: "BelowMinimumLifetime" });
  });

  it("mints when the scope changed (spec edit) even though the token is valid", () => {
    const o = observed();
    expect(plan({ ...o, secrets: written(o), scopeHash: "scope-2" })).toMatchObject({
      action: "mint",
      why: "ScopeChanged",
    });
  });

  it("ignores an expired token and mints", () => {
    const o = observed();
    expect(plan({ ...o, secrets: written(o, { expiresAt: now - 1, refreshAt: now - 10 }) })).toMatchObject({
      action: "mint",
    });
  });

  it("does not trust a token edited by hand (hash mismatch) and mints", () => {
    const o = observed();
    const secrets = written(o);
    const s = secrets.get("ci-token");
    if (!s) throw new Error("no secret");
    secrets.set("ci-token", { ...s, data: { token: "ghs_edited" } });
    expect(plan({ ...o, secrets })).toMatchObject({ action: "mint", why: "NoToken" });
  });

  it("restores a deleted output from the token another output still holds, without minting", () => {
    const targets: SecretTarget[] = [
      { name: "ci-token", format: "token" },
      { name: "ci-flux", format: "basicAuth" },
    ];
    const o = observed({ targets });
    const secrets = written(o);
    secrets.delete("ci-flux");
    const decision = plan({ ...o, secrets });
    expect(decision).toMatchObject({ action: "write", current: { token } });
    expect(decision.action === "write" && decision.secrets.map((s) => s.name)).toEqual(["ci-flux"]);
  });

  it("rewrites a Secret whose labels were removed by hand", () => {
    const o = observed();
    const secrets = written(o);
    const s = secrets.get("ci-token");
    if (!s) throw new Error("no secret");
    secrets.set("ci-token", {
      ...s,
      annotations: { ...s.annotations, [annotations.format]: "token" },
      labels: { [labels.token]: "ci" },
    });
    expect(plan({ ...o, secrets })).toMatchObject({ action: "write" });
  });
});

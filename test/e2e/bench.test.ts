import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { github, kube, Operator } from "../../bench/lib.ts";
import { burst, deleteNamespaces, restart, sharing, steady } from "../../bench/scenarios.ts";
import { kubeconfigPath } from "../support/cluster.ts";

/**
 * The small version of `make bench` (bench/): the same scenarios with a few tokens, asserting
 * the counting invariants — calls and writes — never times.
 */
describe("benchmark invariants (small)", () => {
  const k = kube(kubeconfigPath());
  const id = randomBytes(3).toString("hex");
  const ns = { burst: `bench-${id}-b`, steady: `bench-${id}-steady`, sharing: `bench-${id}-sharing` };
  // The operator only watches these namespaces, so other tests' leftovers cannot count.
  const flags = ["--namespaces", `${ns.burst}-0,${ns.steady},${ns.sharing}`, "--workers", "8"];
  let slow: Awaited<ReturnType<typeof github>>;
  let short: Awaited<ReturnType<typeof github>>;
  let op: Operator;

  beforeAll(async () => {
    slow = await github({ rateLimit: false });
    slow.sim.faults.add({ route: "*", fault: { kind: "latency", ms: 20 } });
    short = await github({ rateLimit: false, tokenLifetimeSeconds: 12 });
    op = new Operator(kubeconfigPath(), flags);
    await op.started;
  });
  afterAll(async () => {
    await op?.stop();
    await slow?.sim.close();
    await short?.sim.close();
  });

  it("burst: one mint, and three writes per new token: Secret, status, finalizer", async () => {
    const r = await burst(k, op, slow, 40, ns.burst, { perNamespace: 40 });
    expect(r.mints).toBe(40);
    expect(r.operatorWrites["patch secrets"]).toBe(40);
    expect(r.operatorWrites["patch githubapptokens/status"]).toBe(40);
    expect(r.operatorWrites["patch githubapptokens"]).toBe(40);
    // No Normal event per new token (docs/events.md): status says Issued.
    expect(r.operatorWrites["post events"] ?? 0).toBe(0);
    // No Secret read either: a name the managed cache does not have is written create-only,
    // and the data of ghat's own writes is kept, so the reconcile of their echo reads nothing.
    expect(r.operatorRequests["get secrets"] ?? 0).toBe(0);
    // ghat.dev/in-use on the one GitHubApp the 40 tokens use: once, not per token.
    expect(r.operatorWrites["patch githubapps"]).toBe(1);
    // The App's status (Verified): once for the App, not per token. ClusterGitHubApps are
    // cluster-wide: other files' may get their status checked in the window too.
    expect(r.operatorWrites["patch githubapps/status"] ?? 0).toBeLessThanOrEqual(1);
    expect(
      Object.keys(r.operatorWrites)
        .filter((w) => w !== "patch githubapps/status" && w !== "patch clustergithubapps/status")
        .sort(),
    ).toEqual(["patch githubapps", "patch githubapptokens", "patch githubapptokens/status", "patch secrets"]);
  });

  it("steady state: one mint and two writes per rotation, nothing between rotations, never below the minimum lifetime", async () => {
    const r = await steady(k, op, short, { tokens: 8, lifetimeS: 12, rotationsPerToken: 2, ns: ns.steady });
    expect(r.everMinted, JSON.stringify(r)).toBe(r.everHeld);
    expect(r.writesBetweenRotations, JSON.stringify(r)).toBe(0);
    expect(r.minRemainingS).toBeGreaterThanOrEqual(r.minRemainingPolicyS - 1);
    // Each rotation: one Secret apply, one status apply (±1 for a rotation at the window's edge).
    expect(Math.abs(r.secretWritesPerRotation * r.rotations - r.rotations)).toBeLessThanOrEqual(r.tokens);
    expect(r.extraOperatorWrites).toBeLessThanOrEqual(r.tokens);
  });

  it("sharing: tokens of one scope cost one mint per rotation", async () => {
    const r = await sharing(k, short, { tokens: 10, lifetimeS: 12, rotations: 2, ns: ns.sharing });
    expect(r.mints).toBe(r.distinctTokens);
    expect(r.withoutSharing).toBeGreaterThanOrEqual(10 * r.mints);
  });

  it("restart: no GitHub call and no write over valid tokens", async () => {
    await deleteNamespaces(k, [ns.steady, ns.sharing]);
    const { result, op: next } = await restart(k, op, [slow, short], 40, flags);
    op = next;
    expect(result.githubCalls).toBe(0);
    expect(result.operatorWrites, JSON.stringify(result)).toEqual({});
  });
});

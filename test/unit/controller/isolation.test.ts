import { describe, expect, it } from "vitest";
import type { GitHubAppToken } from "../../../src/api/githubapptoken.ts";
import type { MintGate, MintKeys } from "../../../src/controller/ports.ts";
import { GhatError } from "../../../src/core/errors.ts";
import { MintLimiter } from "../../../src/core/limits.ts";
import { finalizer } from "../../../src/kube/kube.ts";
import { harness, tokenObject } from "./fakes.ts";

const key = "team/ci";
const ready = (t: GitHubAppToken | undefined) => t?.status?.conditions?.find((c) => c.type === "Ready");

/** A gate with only the per-token interval, enough to see the reconciler obey a gate. */
function intervalGate(intervalMs: number): MintGate & { checked: MintKeys[] } {
  const last = new Map<string, number>();
  const checked: MintKeys[] = [];
  return {
    checked,
    check(keys, now) {
      checked.push(keys);
      const at = last.get(keys.token);
      return at !== undefined && now < at + intervalMs
        ? { allowed: false, retryAt: at + intervalMs, reason: "token-interval" }
        : { allowed: true };
    },
    record(keys, now) {
      last.set(keys.token, now);
    },
    forget(tokenKey) {
      last.delete(tokenKey);
    },
  };
}

/** Runs every requeue that falls due within `ms`, as the work queue would. */
async function runFor(h: ReturnType<typeof harness>, ms: number): Promise<void> {
  const end = h.clock.now() + ms;
  for (let i = 0; i < 10_000; i++) {
    const at = h.requeues.get(key);
    if (at === undefined || at > end) break;
    h.clock.advance(Math.max(0, at - h.clock.now()));
    h.requeues.delete(key);
    await h.reconciler.reconcile(key);
  }
  h.clock.advance(Math.max(0, end - h.clock.now()));
}

describe("Reconciler under a hostile tenant", () => {
  it("backs off instead of re-minting when GitHub's token arrives already below the minimum lifetime", async () => {
    const h = harness({ limiter: new MintLimiter() });
    h.github.lifetimeMs = 2_000; // a server that answers expires_at 2 s ahead
    h.kube.tokens.set(key, tokenObject({ sharing: "None" }));
    await h.reconciler.reconcile(key);
    await runFor(h, 5 * 60_000);
    // At most one mint a minute (the interval), not one per reconcile.
    expect(h.github.minted.length).toBeGreaterThanOrEqual(2);
    expect(h.github.minted.length).toBeLessThanOrEqual(6);
    const r = ready(h.kube.tokens.get(key));
    expect(["InvalidResponse", "Throttled"]).toContain(r?.reason);
    expect(r?.message).toMatch(/minRemainingLifetime|mint limit/);
  });

  it("holds a mint back with Throttled and the time it may happen, keeping the old token", async () => {
    const gate = intervalGate(60_000);
    const h = harness({ limiter: gate });
    h.kube.tokens.set(key, tokenObject({ sharing: "None" }));
    await h.reconciler.reconcile(key);
    expect(h.github.minted).toHaveLength(1);
    // The scope changes at once: the next mint waits for the interval.
    h.kube.tokens.set(key, {
      ...tokenObject({ sharing: "None", permissions: { contents: "write" } }),
      status: h.kube.tokens.get(key)?.status,
    });
    const t = h.kube.tokens.get(key);
    if (t) t.metadata.generation = 2;
    await h.reconciler.reconcile(key);
    expect(h.github.minted).toHaveLength(1);
    expect(ready(h.kube.tokens.get(key))).toMatchObject({ reason: "Throttled" });
    expect(h.requeues.get(key)).toBe(h.clock.now() + 60_000);
    expect(gate.checked.at(-1)).toEqual({
      token: key,
      app: "team|GitHubApp/team/app/1@https://api.github.com",
      installation: expect.stringMatching(/^team\|GitHubApp\/team\/app\/1@.*#42$/),
    });
    h.clock.advance(60_000);
    await h.reconciler.reconcile(key);
    expect(h.github.minted).toHaveLength(2);
  });

  it("revokes at once and says NotPermitted when GitHub resolved an owner the ClusterGitHubApp policy does not allow", async () => {
    const h = harness();
    h.kube.apps.set("ClusterGitHubApp//shared", {
      apiVersion: "ghat.dev/v1alpha1",
      kind: "ClusterGitHubApp",
      metadata: { name: "shared" },
      spec: {
        appId: 1,
        privateKeySecretRef: { name: "shared-key", key: "private-key.pem" },
        baseUrl: "https://api.github.com",
        policy: {
          namespaces: { names: ["team"] },
          installations: { owners: ["acme"] },
          repositories: ["acme/app-*"],
          maxPermissions: { contents: "read" },
        },
      },
    });
    h.kube.keySecrets.set("ghat-system/shared-key", h.kube.keySecrets.get("team/app-key") ?? {});
    // The token names acme/legacy-tool; GitHub answers for a repository now owned by other-org.
    h.github.owner = "other-org";
    h.github.grantedRepositories = ["other-org/app-1"];
    h.kube.tokens.set(
      key,
      tokenObject({
        appRef: { kind: "ClusterGitHubApp", name: "shared" },
        installation: { repository: "acme/legacy-tool" },
        repositories: ["app-1"],
      }),
    );
    await h.reconciler.reconcile(key);
    expect(h.github.minted).toHaveLength(1);
    await expect.poll(() => h.github.revoked).toEqual([h.github.minted[0]]);
    expect(h.kube.secretData("team", "ci-token")).toBeUndefined();
    const r = ready(h.kube.tokens.get(key));
    expect(r).toMatchObject({ status: "False", reason: "NotPermitted" });
    expect(r?.message).toContain("other-org");
    expect(
      h.kube.tokens.get(key)?.status?.conditions?.find((c) => c.type === "ScopeMatched"),
    ).toBeUndefined();
  });

  it("revokes through the endpoint the token was minted at when its App is gone, never a default host", async () => {
    const h = harness();
    const app = h.kube.apps.get("GitHubApp/team/app") as { spec: Record<string, unknown> };
    app.spec.baseUrl = "https://ghes.example.com/api/v3";
    app.spec.proxy = "http://proxy.example.com:3128";
    h.kube.tokens.set(key, tokenObject());
    await h.reconciler.reconcile(key);
    h.kube.apps.delete("GitHubApp/team/app");
    const t = h.kube.tokens.get(key);
    if (t) t.metadata.deletionTimestamp = "2026-11-24T12:30:00Z";
    await h.reconciler.reconcile(key);
    expect(h.github.revokedVia).toEqual([
      {
        token: h.github.minted[0],
        baseUrl: "https://ghes.example.com/api/v3",
        proxy: "http://proxy.example.com:3128",
      },
    ]);
    expect(h.kube.tokens.has(key)).toBe(false);
  });

  it("does not send a token to github.com when where it was minted is unknown; it says so instead", async () => {
    const h = harness();
    h.kube.tokens.set(key, tokenObject());
    await h.reconciler.reconcile(key);
    h.reconciler.reset(); // a new leadership term: nothing remembered
    h.kube.apps.delete("GitHubApp/team/app");
    const t = h.kube.tokens.get(key);
    if (t) t.metadata.deletionTimestamp = "2026-11-24T12:30:00Z";
    await h.reconciler.reconcile(key);
    expect(h.github.revokedVia).toEqual([]);
    expect(h.kube.events.map((e) => e.reason)).toContain("RevokeFailed");
    expect(h.kube.tokens.has(key)).toBe(false);
  });

  it("a replica that stepped down makes no GitHub call: pending revocations wait for nothing and are dropped", async () => {
    let leading = true;
    const h = harness({ canAct: () => leading });
    h.kube.tokens.set(key, tokenObject());
    await h.reconciler.reconcile(key);
    h.clock.advance((h.requeues.get(key) ?? 0) - h.clock.now());
    await h.reconciler.reconcile(key);
    expect(h.reconciler.pendingRevocations).toBe(1);
    leading = false;
    h.clock.advance(60_000);
    expect(h.github.revoked).toEqual([]);
  });

  it("cancels revocation timers on reset and stop, and revokes a forgotten key's superseded tokens at once", async () => {
    const h = harness();
    const rotate = async () => {
      h.clock.advance((h.requeues.get(key) ?? 0) - h.clock.now());
      await h.reconciler.reconcile(key);
    };
    h.kube.tokens.set(key, tokenObject());
    await h.reconciler.reconcile(key);
    await rotate();
    expect(h.reconciler.pendingRevocations).toBe(1);
    h.reconciler.reset();
    expect(h.reconciler.pendingRevocations).toBe(0);
    h.clock.advance(60_000);
    expect(h.github.revoked).toEqual([]);

    await h.reconciler.reconcile(key);
    await rotate();
    expect(h.reconciler.pendingRevocations).toBe(1);
    h.reconciler.stop();
    expect(h.reconciler.pendingRevocations).toBe(0);

    await rotate();
    expect(h.reconciler.pendingRevocations).toBe(1);
    const superseded = h.github.minted.at(-2);
    h.kube.tokens.delete(key);
    await h.reconciler.reconcile(key);
    expect(h.reconciler.pendingRevocations).toBe(0);
    await expect.poll(() => h.github.revoked).toContain(superseded);
  });

  it("removes the finalizer of a deleted token whose spec no longer parses, deleting its Secrets", async () => {
    const h = harness();
    h.kube.tokens.set(key, tokenObject());
    await h.reconciler.reconcile(key);
    const minted = h.github.minted[0];
    const t = h.kube.tokens.get(key) as unknown as {
      spec: Record<string, unknown>;
      metadata: Record<string, unknown>;
    };
    t.spec.installation = { owner: 42 }; // no longer valid
    t.metadata.deletionTimestamp = "2026-11-24T12:30:00Z";
    expect(t.metadata.finalizers).toEqual([finalizer]);
    await h.reconciler.reconcile(key);
    expect(h.kube.tokens.has(key)).toBe(false);
    expect(h.kube.secretData("team", "ci-token")).toBeUndefined();
    expect(h.github.revoked).toEqual([minted]);
  });

  it("caps what GitHub's answer puts into status", async () => {
    const h = harness();
    h.github.grantedRepositories = Array.from({ length: 500 }, (_, i) => `acme/r${i}`);
    h.kube.tokens.set(key, tokenObject({ repositories: Array.from({ length: 500 }, (_, i) => `x${i}`) }));
    await h.reconciler.reconcile(key);
    const status = h.kube.tokens.get(key)?.status as { repositories?: string[] } | undefined;
    expect(status?.repositories).toHaveLength(100);
    const scope = h.kube.tokens.get(key)?.status?.conditions?.find((c) => c.type === "ScopeMatched");
    expect(scope?.message.length).toBeLessThan(400);
    expect(scope?.message).toContain("and 490 more");
  });

  it("revokes the token on delete even when the namespace's deletion removed its Secrets first", async () => {
    const h = harness();
    h.kube.tokens.set(key, tokenObject());
    await h.reconciler.reconcile(key);
    h.kube.secrets.delete("team/ci-token"); // the namespace controller got there first
    h.kube.keySecrets.delete("team/app-key");
    const t = h.kube.tokens.get(key);
    if (t) t.metadata.deletionTimestamp = "2026-11-24T12:30:00Z";
    await h.reconciler.reconcile(key);
    expect(h.github.revokedVia).toEqual([
      { token: h.github.minted[0], baseUrl: "https://api.github.com", proxy: undefined },
    ]);
    expect(h.kube.tokens.has(key)).toBe(false);
  });

  it("backs a server that answers nonsense off exponentially, whatever the tenant's refresh policy", async () => {
    const h = harness();
    h.kube.tokens.set(
      key,
      tokenObject({ refreshPolicy: { refreshBefore: "2s", minRemainingLifetime: "1s" } }),
    );
    const invalid = () => new GhatError("InvalidResponse", "GitHub answered a token that does not match");
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      h.github.failNext.push(invalid());
      await h.reconciler.reconcile(key);
      const at = h.requeues.get(key) ?? 0;
      delays.push(at - h.clock.now());
      h.clock.advance(at - h.clock.now());
    }
    // 1 s, 2 s, 4 s, … (each jittered over its upper half), not one a second for ever.
    expect(delays.at(-1)).toBeGreaterThanOrEqual(60_000);
    expect(delays.reduce((a, b) => a + b, 0)).toBeGreaterThan(100_000);
  });
});

import { describe, expect, it } from "vitest";
import type { GitHubAppToken } from "../../../src/api/githubapptoken.ts";
import { SharedMints } from "../../../src/controller/sharing.ts";
import { GhatError } from "../../../src/core/errors.ts";
import { harness, tokenObject } from "./fakes.ts";

/** A token named `name` in namespace `ns` writing Secret `<name>-token`. */
function named(name: string, spec: Partial<GitHubAppToken["spec"]> = {}, ns = "team"): GitHubAppToken {
  const t = tokenObject({ secrets: [{ name: `${name}-token`, format: "token" }], ...spec });
  t.metadata = { ...t.metadata, name, namespace: ns, uid: `uid-${ns}-${name}` };
  return t;
}

function setup(...tokens: GitHubAppToken[]) {
  const h = harness();
  for (const t of tokens) h.kube.tokens.set(`${t.metadata.namespace}/${t.metadata.name}`, t);
  const value = (ns: string, name: string) => h.kube.secretData(ns, `${name}-token`)?.token;
  const remove = async (ns: string, name: string) => {
    const t = h.kube.tokens.get(`${ns}/${name}`);
    if (!t) throw new Error(`no ${name}`);
    t.metadata.deletionTimestamp = new Date(h.clock.now()).toISOString();
    await h.reconciler.reconcile(`${ns}/${name}`);
  };
  return { ...h, value, remove };
}

describe("sharing one mint per scope", () => {
  it("hands tokens of the same scope in a namespace one mint, even when reconciled at once", async () => {
    const { github, reconciler, value, kube } = setup(named("a"), named("b"), named("c"));
    await Promise.all(["team/a", "team/b", "team/c"].map((k) => reconciler.reconcile(k)));
    expect(github.minted).toHaveLength(1);
    for (const n of ["a", "b", "c"]) expect(value("team", n)).toBe(github.minted[0]);
    // Each has its own Ready status and refresh time.
    for (const n of ["a", "b", "c"]) {
      expect(kube.tokens.get(`team/${n}`)?.status?.conditions?.[0]).toMatchObject({ reason: "Issued" });
    }
  });

  it("mints separately for another scope, another namespace, or a token with sharing None", async () => {
    const { github, reconciler, kube } = setup(
      named("a"),
      named("wider", { permissions: { contents: "write" } }),
      named("a", {}, "other"),
      named("own", { sharing: "None" }),
    );
    const app = structuredClone(kube.apps.get("GitHubApp/team/app")) as { metadata: { namespace: string } };
    app.metadata.namespace = "other";
    kube.apps.set("GitHubApp/other/app", app);
    kube.keySecrets.set("other/app-key", kube.keySecrets.get("team/app-key") ?? {});
    for (const k of ["team/a", "team/wider", "other/a", "team/own"]) await reconciler.reconcile(k);
    expect(github.minted).toHaveLength(4);
    expect(new Set(github.minted).size).toBe(4);
  });

  it("keeps one mint per scope per lifetime through rotations", async () => {
    const { github, reconciler, requeues, clock, value } = setup(named("a"), named("b"));
    await reconciler.reconcile("team/a");
    await reconciler.reconcile("team/b");
    for (let lifetime = 0; lifetime < 3; lifetime++) {
      const due = Math.min(requeues.get("team/a") ?? 0, requeues.get("team/b") ?? 0);
      clock.advance(due - clock.now());
      // Each refreshes at its own (jittered) time; the second takes what the first minted.
      for (const k of ["team/a", "team/b"].sort((x, y) => (requeues.get(x) ?? 0) - (requeues.get(y) ?? 0))) {
        clock.advance(Math.max(0, (requeues.get(k) ?? 0) - clock.now()));
        await reconciler.reconcile(k);
      }
      expect(value("team", "a")).toBe(value("team", "b"));
    }
    expect(github.minted).toHaveLength(4);
  });

  it("does not revoke a superseded token another Secret still holds; the last holder revokes it", async () => {
    const { github, reconciler, requeues, clock } = setup(named("a"), named("b"));
    await reconciler.reconcile("team/a");
    await reconciler.reconcile("team/b");
    const first = github.minted[0];
    const [early, late] = ["team/a", "team/b"].sort(
      (x, y) => (requeues.get(x) ?? 0) - (requeues.get(y) ?? 0),
    );
    clock.advance((requeues.get(early ?? "") ?? 0) - clock.now());
    await reconciler.reconcile(early ?? "");
    expect(github.minted).toHaveLength(2);
    clock.advance(60_000); // the grace period passes while the other still holds the first token
    expect(github.revoked).toEqual([]);
    clock.advance(Math.max(0, (requeues.get(late ?? "") ?? 0) - clock.now()));
    await reconciler.reconcile(late ?? "");
    expect(github.minted).toHaveLength(2);
    clock.advance(60_000);
    expect(github.revoked).toEqual([first]);
  });

  it("revokes on delete only when no other Secret holds the token, and never hands out a revoked token", async () => {
    const { github, reconciler, remove, value, kube } = setup(named("a"), named("b"));
    await reconciler.reconcile("team/a");
    await reconciler.reconcile("team/b");
    await remove("team", "a");
    expect(github.revoked).toEqual([]);
    expect(value("team", "b")).toBe(github.minted[0]);
    await remove("team", "b");
    expect(github.revoked).toEqual([github.minted[0]]);
    kube.tokens.set("team/c", named("c"));
    await reconciler.reconcile("team/c");
    expect(github.minted).toHaveLength(2);
    expect(value("team", "c")).toBe(github.minted[1]);
  });

  it("fails every waiter of a failed shared mint once, without a mint each", async () => {
    const { github, reconciler, kube } = setup(named("a"), named("b"));
    github.failNext.push(new GhatError("GitHubUnavailable", "GitHub answered 502", { status: 502 }));
    await Promise.all(["team/a", "team/b"].map((k) => reconciler.reconcile(k)));
    expect(github.minted).toHaveLength(0);
    for (const n of ["a", "b"]) {
      expect(kube.tokens.get(`team/${n}`)?.status?.conditions?.[0]).toMatchObject({
        status: "False",
        reason: "GitHubUnavailable",
      });
    }
  });
});

describe("SharedMints", () => {
  const minted = (token: string, expiresAt: number) => ({
    token,
    expiresAt,
    installationId: 1,
    owner: "acme",
    permissions: {},
    repositorySelection: "all",
    repositories: undefined,
  });

  it("mints again when the cached token is no longer usable, and forgets discarded tokens", async () => {
    const shared = new SharedMints();
    let n = 0;
    const mint = async () => minted(`t${++n}`, 1_000_000);
    const now = () => 0;
    expect((await shared.obtain("k", now, () => true, mint)).reused).toBe(false);
    expect(await shared.obtain("k", now, () => true, mint)).toMatchObject({
      reused: true,
      minted: { token: "t1" },
    });
    expect((await shared.obtain("k", now, () => false, mint)).minted.token).toBe("t2");
    shared.discard("t2");
    expect((await shared.obtain("k", now, () => true, mint)).minted.token).toBe("t3");
  });
});

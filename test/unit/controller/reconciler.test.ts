import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { GitHubAppToken } from "../../../src/api/githubapptoken.ts";
import { GhatError } from "../../../src/core/errors.ts";
import { harness, tokenObject } from "./fakes.ts";

const key = "team/ci";
const ready = (t: GitHubAppToken | undefined) => t?.status?.conditions?.find((c) => c.type === "Ready");
const unavailable = () => new GhatError("GitHubUnavailable", "GitHub answered 503", { status: 503 });

/** A harness whose token was minted once, with the clock at its refresh time; and its expiry. */
async function mintedAndDue() {
  const h = harness();
  h.kube.tokens.set(key, tokenObject());
  await h.reconciler.reconcile(key);
  const expiresAt = Date.parse(h.kube.tokens.get(key)?.status?.expiresAt ?? "");
  h.clock.advance((h.requeues.get(key) ?? 0) - h.clock.now());
  return { ...h, expiresAt };
}

describe("Reconciler", () => {
  it("mints, writes the Secret and status, and schedules the refresh from expires_at", async () => {
    const { kube, github, reconciler, requeues, clock } = harness();
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(1);
    expect(kube.secretData("team", "ci-token")).toEqual({ token: github.minted[0] });
    // A name the managed cache does not have is written create-only, not read first.
    expect(kube.secretReads).toBe(0);
    const t = kube.tokens.get(key);
    expect(ready(t)).toMatchObject({ status: "True", reason: "Issued" });
    expect(t?.status?.expiresAt).toBe("2026-11-24T13:00:00Z");
    const refreshAt = requeues.get(key) ?? 0;
    expect(refreshAt).toBeGreaterThanOrEqual(clock.now() + 36 * 60_000);
    expect(refreshAt).toBeLessThanOrEqual(clock.now() + 40 * 60_000);
    expect(t?.status?.refreshAt).toBe(new Date(refreshAt).toISOString().replace(".000", ""));
  });

  it("writes nothing and mints nothing when reconciled again before the refresh time", async () => {
    const { kube, github, reconciler } = harness();
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    const writes = kube.writes;
    await reconciler.reconcile(key);
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(1);
    expect(kube.writes).toBe(writes);
  });

  it("refreshes at refreshAt and revokes the superseded token after the grace period", async () => {
    const { kube, github, reconciler, requeues, clock } = harness();
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    clock.advance((requeues.get(key) ?? 0) - clock.now());
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(2);
    expect(kube.secretData("team", "ci-token")).toEqual({ token: github.minted[1] });
    expect(github.revoked).toEqual([]);
    clock.advance(60_000);
    expect(github.revoked).toEqual([github.minted[0]]);
  });

  it("keeps the old token in the Secret while GitHub fails, says so in Ready, and backs off", async () => {
    const { kube, github, reconciler, requeues, clock } = await mintedAndDue();
    github.failNext.push(unavailable());
    await reconciler.reconcile(key);
    expect(kube.secretData("team", "ci-token")).toEqual({ token: github.minted[0] });
    expect(ready(kube.tokens.get(key))).toMatchObject({ status: "True", reason: "GitHubUnavailable" });
    const retryIn = (requeues.get(key) ?? 0) - clock.now();
    expect(retryIn).toBeGreaterThanOrEqual(500);
    expect(retryIn).toBeLessThanOrEqual(1_000);
    expect(kube.events.map((e) => e.reason)).toContain("GitHubUnavailable");
    clock.advance(retryIn);
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(2);
    expect(ready(kube.tokens.get(key))).toMatchObject({ status: "True", reason: "Issued" });
  });

  it("does not retry early when an event arrives during backoff, but does after a spec change", async () => {
    const { kube, github, reconciler } = harness();
    kube.tokens.set(key, tokenObject());
    github.failNext.push(new GhatError("GitHubUnavailable", "503", { status: 503 }));
    await reconciler.reconcile(key);
    const attempts = () => github.minted.length + github.failNext.length;
    github.failNext.push(new GhatError("GitHubUnavailable", "503", { status: 503 }));
    const before = attempts();
    await reconciler.reconcile(key); // e.g. the informer event of its own status write
    await reconciler.reconcile(key);
    expect(attempts()).toBe(before);
    const edited = tokenObject({ permissions: { contents: "write" } });
    edited.metadata.generation = 2;
    kube.tokens.set(key, { ...edited, status: kube.tokens.get(key)?.status });
    await reconciler.reconcile(key);
    expect(github.failNext).toHaveLength(0);
  });

  it("honours the rate-limit reset time GitHub gave", async () => {
    const { kube, github, reconciler, requeues, clock } = harness();
    kube.tokens.set(key, tokenObject());
    github.failNext.push(
      new GhatError("RateLimited", "rate limited", { status: 403, retryAt: clock.now() + 600_000 }),
    );
    await reconciler.reconcile(key);
    expect(requeues.get(key)).toBe(clock.now() + 600_000);
    expect(ready(kube.tokens.get(key))).toMatchObject({ status: "False", reason: "RateLimited" });
  });

  it("never overwrites a Secret it does not own and reports SecretConflict", async () => {
    const { kube, github, reconciler, requeues, clock } = harness();
    kube.tokens.set(key, tokenObject());
    kube.secrets.set("team/ci-token", {
      type: "Opaque",
      metadata: { name: "ci-token" },
      data: { token: "b3RoZXI=" },
    });
    await reconciler.reconcile(key);
    // The first pass takes the unlabelled name to be free (no GET): its create-only write
    // fails, the token it minted is revoked, and the pass runs again reading the Secret.
    expect(github.minted).toHaveLength(1);
    expect(github.revoked).toEqual(github.minted);
    expect(kube.secretData("team", "ci-token")).toEqual({ token: "other" });
    expect(ready(kube.tokens.get(key))).toMatchObject({ status: "False", reason: "SecretConflict" });
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(1);
    // ghat does not watch Secrets it does not own: it looks again after --terminal-retry.
    expect(requeues.get(key)).toBe(clock.now() + 15 * 60_000);
  });

  it("writes the finalizer beside the mint; if that write fails, the token reaches no Secret and is revoked", async () => {
    const { kube, github, reconciler, clock } = harness();
    const fresh = tokenObject();
    fresh.metadata.finalizers = [];
    kube.tokens.set(key, fresh);
    kube.finalizerError = new GhatError("KubernetesError", "HTTP 500", { status: 500 });
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(1);
    await expect.poll(() => github.revoked).toEqual(github.minted);
    expect(kube.secrets.size).toBe(0);
    expect(ready(kube.tokens.get(key))).toMatchObject({ status: "False", reason: "KubernetesError" });
    clock.advance(5 * 60_000); // past the backoff
    await reconciler.reconcile(key);
    expect(kube.tokens.get(key)?.metadata.finalizers).toEqual(["ghat.dev/revoke-token"]);
    expect(kube.secretData("team", "ci-token")).toEqual({ token: github.minted[1] });
  });

  it("renders the owner of an installation named by id from the status it wrote until the cache shows it", async () => {
    const { kube, reconciler } = harness();
    const spec = tokenObject({ installation: { id: 7 } });
    spec.spec.secrets = [
      { name: "ci-token", format: "template", template: { data: { owner: "{{ owner }}" } } },
    ];
    kube.tokens.set(key, structuredClone(spec));
    await reconciler.reconcile(key);
    const owner = kube.tokens.get(key)?.status?.owner;
    expect(owner).toBeTruthy();
    expect(kube.secretData("team", "ci-token")).toEqual({ owner });
    // The cache shows the finalizer but not the status yet (its echo is still on the way).
    const lagging = structuredClone(kube.tokens.get(key));
    if (!lagging) throw new Error("no token");
    delete lagging.status;
    kube.tokens.set(key, lagging);
    const writes = kube.writes;
    await reconciler.reconcile(key);
    expect(kube.writes).toBe(writes);
    expect(kube.secretData("team", "ci-token")).toEqual({ owner });
    // Deleted by hand meanwhile: restored with the owner, not without it.
    kube.secrets.delete("team/ci-token");
    await reconciler.reconcile(key);
    expect(kube.secretData("team", "ci-token")).toEqual({ owner });
  });

  it("drops its copy of the status it wrote once the cache shows that status, and writes nothing more", async () => {
    const { kube, reconciler } = harness();
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    expect(reconciler.statusCopies).toBe(1);
    const seen = structuredClone(kube.tokens.get(key));
    if (!seen?.status) throw new Error("no status written");
    // A different status in the cache (not yet ours) keeps the copy.
    reconciler.statusSeen(key, { ...seen, status: { ...seen.status, owner: "other" } });
    expect(reconciler.statusCopies).toBe(1);
    reconciler.statusSeen(key, seen);
    expect(reconciler.statusCopies).toBe(0);
    const writes = kube.writes;
    await reconciler.reconcile(key);
    expect(kube.writes).toBe(writes);
  });

  it("restores a deleted Secret without minting", async () => {
    const { kube, github, reconciler } = harness();
    kube.tokens.set(
      key,
      tokenObject({
        secrets: [
          { name: "ci-token", format: "token" },
          { name: "ci-flux", format: "basicAuth" },
        ],
      }),
    );
    await reconciler.reconcile(key);
    kube.secrets.delete("team/ci-flux");
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(1);
    expect(kube.secretData("team", "ci-flux")).toEqual({
      username: "x-access-token",
      password: github.minted[0],
    });
  });

  it("replaces a token whose only Secret was deleted, never hands it out again, and revokes it after the grace", async () => {
    const { kube, github, reconciler, clock } = harness();
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    kube.secrets.delete("team/ci-token");
    await reconciler.reconcile(key);
    // The shared cache still knows the first token: it must not come back into the Secret.
    expect(github.minted).toHaveLength(2);
    expect(kube.secretData("team", "ci-token")).toEqual({ token: github.minted[1] });
    clock.advance(60_000);
    expect(github.revoked).toEqual([github.minted[0]]);
  });

  it("does not mint again for a template that holds the token only encoded (no hot loop)", async () => {
    const { kube, github, reconciler } = harness();
    kube.tokens.set(
      key,
      tokenObject({
        secrets: [
          {
            name: "ci-token",
            format: "template",
            template: { data: { auth: "{{ token | base64 }}" } },
          } as GitHubAppToken["spec"]["secrets"][number],
        ],
      }),
    );
    await reconciler.reconcile(key);
    await reconciler.reconcile(key);
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(1);
    expect(kube.secretData("team", "ci-token")).toEqual({
      auth: Buffer.from(github.minted[0] ?? "").toString("base64"),
    });
  });

  it("caps the backoff so retries land before the token falls below its minimum lifetime", async () => {
    const { github, reconciler, requeues, clock, expiresAt } = await mintedAndDue();
    // Minimum lifetime 10 min (the default): however many failures, every retry lands
    // before expiresAt - 10 min while that is ahead.
    const below = expiresAt - 10 * 60_000;
    for (let failures = 0; below - clock.now() > 4 * 60_000; failures++) {
      github.failNext.push(unavailable());
      await reconciler.reconcile(key);
      const retryAt = requeues.get(key) ?? 0;
      expect(retryAt, `after ${failures + 1} failures`).toBeLessThan(below);
      clock.advance(retryAt - clock.now());
    }
    expect(github.minted).toHaveLength(1);
  });

  it("keeps retrying at the floor's pace once the held token has expired during an outage", async () => {
    const { github, reconciler, requeues, clock, expiresAt } = await mintedAndDue();
    // GitHub answers 503 from the refresh until well after the token expired: the failures
    // pile up while it is held, and none of them may push a retry past the floor (60 s for
    // the default 10 min minimum) once the Secret holds nothing usable.
    let failures = 0;
    while (clock.now() < expiresAt + 30 * 60_000) {
      github.failNext.push(unavailable());
      await reconciler.reconcile(key);
      failures++;
      const retryAt = requeues.get(key) ?? 0;
      if (clock.now() >= expiresAt)
        expect(retryAt - clock.now(), `after ${failures} failures`).toBeLessThanOrEqual(60_000);
      clock.advance(retryAt - clock.now());
    }
    // GitHub is back: the next retry mints.
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(2);
    // A bounded pace, not a hot loop: at most one attempt per 30 s on average past expiry.
    expect(failures).toBeLessThan(200);
  });

  it("forgets what it remembers on reset (a new leadership term) and re-reads everything", async () => {
    const { github, reconciler } = await mintedAndDue();
    github.failNext.push(unavailable());
    await reconciler.reconcile(key);
    // In backoff: an unchanged reconcile waits. After reset it tries at once.
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(1);
    reconciler.reset();
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(2);
  });

  it("re-mints at once when the spec's scope changes, and revokes the old token after the grace", async () => {
    const { kube, github, reconciler, clock } = harness();
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    // A spec change: the API server gives the object a new generation.
    const changed = tokenObject({ permissions: { contents: "write" } });
    kube.tokens.set(key, {
      ...changed,
      metadata: { ...changed.metadata, generation: (changed.metadata.generation ?? 1) + 1 },
      status: kube.tokens.get(key)?.status,
    });
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(2);
    clock.advance(60_000);
    expect(github.revoked).toEqual([github.minted[0]]);
  });

  it("says when GitHub granted less than asked", async () => {
    const { kube, github, reconciler } = harness();
    github.granted = { contents: "read" };
    kube.tokens.set(key, tokenObject({ permissions: { contents: "read", issues: "write" } }));
    await reconciler.reconcile(key);
    const scope = kube.tokens.get(key)?.status?.conditions?.find((c) => c.type === "ScopeMatched");
    expect(scope).toMatchObject({ status: "False", reason: "PartiallyGranted" });
    expect(scope?.message).toContain("issues not granted");
  });

  it("reports a missing App, then recovers when it appears", async () => {
    const { kube, github, reconciler } = harness();
    const app = kube.apps.get("GitHubApp/team/app");
    kube.apps.delete("GitHubApp/team/app");
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    expect(ready(kube.tokens.get(key))).toMatchObject({ status: "False", reason: "AppNotFound" });
    kube.apps.set("GitHubApp/team/app", app);
    await reconciler.reconcile(key);
    expect(github.minted).toHaveLength(1);
  });

  it("reports an unreadable key as InvalidPrivateKey without echoing it", async () => {
    const { kube, reconciler } = harness();
    kube.keySecrets.set("team/app-key", {
      "private-key.pem": Buffer.from("ssh-ed25519 AAAA secret").toString("base64"),
    });
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    const r = ready(kube.tokens.get(key)) as { reason: string; message: string };
    expect(r.reason).toBe("InvalidPrivateKey");
    expect(r.message).not.toContain("AAAA");
  });

  it("on delete revokes the token, removes the Secrets and the finalizer", async () => {
    const { kube, github, reconciler } = harness();
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    const t = kube.tokens.get(key);
    if (!t) throw new Error("missing");
    t.metadata.deletionTimestamp = "2026-11-24T12:10:00Z";
    await reconciler.reconcile(key);
    expect(github.revoked).toEqual([github.minted[0]]);
    expect(kube.secrets.size).toBe(0);
    expect(kube.tokens.has(key)).toBe(false);
  });

  it("never writes the token into logs, status or events", async () => {
    const chunks: string[] = [];
    const sink = new Writable({
      write: (c, _e, cb) => {
        chunks.push(String(c));
        cb();
      },
    });
    const { kube, github, reconciler, clock, requeues } = harness({ log: sink });
    kube.tokens.set(key, tokenObject());
    await reconciler.reconcile(key);
    clock.advance((requeues.get(key) ?? 0) - clock.now());
    github.failNext.push(new GhatError("GitHubUnavailable", "boom"));
    await reconciler.reconcile(key);
    const visible =
      chunks.join("") + JSON.stringify(kube.tokens.get(key)?.status) + JSON.stringify(kube.events);
    for (const token of github.minted) expect(visible).not.toContain(token);
    expect(visible).not.toContain("PRIVATE KEY");
  });
});

import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { Controller } from "../../../src/controller/controller.ts";
import type { ClusterCache } from "../../../src/kube/cache.ts";
import { createLogger } from "../../../src/log.ts";
import { FakeClock } from "../fakeclock.ts";

const log = createLogger({ level: "error", destination: new Writable({ write: (_c, _e, cb) => cb() }) });

function controller() {
  const tokens = [
    { metadata: { namespace: "team", name: "a" }, spec: { appRef: { name: "app" } } },
    {
      metadata: { namespace: "team", name: "b" },
      spec: { appRef: { kind: "ClusterGitHubApp", name: "org" } },
    },
  ];
  const cache = { tokens: () => tokens } as unknown as ClusterCache;
  return new Controller({ clock: new FakeClock(), log, cache, workers: 2, operatorNamespace: "ghat-system" });
}

const app = (generation: number, extra: Record<string, unknown> = {}) => ({
  metadata: { namespace: "team", name: "app", uid: "u1", generation, ...extra },
});

describe("which tokens an App event reconciles", () => {
  it("a spec change (new generation) reconciles the App's tokens; a status-only update does not", () => {
    const c = controller();
    expect(c.keysFor("GitHubApp", app(1))).toEqual(["team/a"]);
    // The App checker's status write, or ghat's in-use finalizer: same generation.
    expect(c.keysFor("GitHubApp", app(1, { finalizers: ["ghat.dev/in-use"] }))).toEqual([]);
    expect(c.keysFor("GitHubApp", app(2))).toEqual(["team/a"]);
  });

  it("deletion (a deletionTimestamp, then the delete event) reconciles them", () => {
    const c = controller();
    c.keysFor("GitHubApp", app(1));
    expect(c.keysFor("GitHubApp", app(1, { deletionTimestamp: "2026-12-01T00:00:00Z" }))).toEqual(["team/a"]);
    const added: string[] = [];
    const add = c.queue.add.bind(c.queue);
    c.queue.add = (key: string) => {
      added.push(key);
      add(key);
    };
    c.onChange("GitHubApp", app(1, { deletionTimestamp: "2026-12-01T00:00:00Z" }), "delete");
    expect(added).toEqual(["team/a"]);
  });

  it("a re-created App (new uid, same generation) reconciles them", () => {
    const c = controller();
    c.keysFor("GitHubApp", app(1));
    expect(c.keysFor("GitHubApp", { metadata: { ...app(1).metadata, uid: "u2" } })).toEqual(["team/a"]);
  });

  it("the same holds for a ClusterGitHubApp", () => {
    const c = controller();
    const org = (generation: number) => ({ metadata: { name: "org", uid: "o", generation } });
    expect(c.keysFor("ClusterGitHubApp", org(3))).toEqual(["team/b"]);
    expect(c.keysFor("ClusterGitHubApp", org(3))).toEqual([]);
    expect(c.keysFor("ClusterGitHubApp", org(4))).toEqual(["team/b"]);
  });
});

describe("which GitHubAppToken and Secret events reconcile", () => {
  const token = (rv: string, extra: Record<string, unknown> = {}) => ({
    metadata: { namespace: "team", name: "a", uid: "t1", generation: 1, resourceVersion: rv, ...extra },
    spec: { appRef: { name: "app" } },
  });
  const secret = (rv: string) => ({
    metadata: { namespace: "team", name: "a-token", resourceVersion: rv, labels: { "ghat.dev/token": "a" } },
  });
  function recording() {
    const c = controller();
    const added: string[] = [];
    c.queue.add = (key: string) => {
      added.push(key);
    };
    return { c, added };
  }

  it("ghat's own writes echo back without a reconcile; anyone else's changes reconcile", () => {
    const { c, added } = recording();
    c.onChange("GitHubAppToken", token("1"), "add");
    expect(added).toEqual(["team/a"]);
    // The finalizer ghat added (its response's resourceVersion), then its status write.
    c.tokenWritten("team", "a", "2");
    c.onChange("GitHubAppToken", token("2", { finalizers: ["ghat.dev/revoke-token"] }), "update");
    c.onChange("GitHubAppToken", token("3", { finalizers: ["ghat.dev/revoke-token"] }), "update");
    c.secretWritten("team", "a-token", "4");
    c.onChange("Secret", secret("4"), "add");
    expect(added).toEqual(["team/a"]);
    // A hand edit of the Secret, a touch of the token (an annotation), a spec change, a
    // deletion: each reconciles.
    c.onChange("Secret", secret("5"), "update");
    c.onChange(
      "GitHubAppToken",
      token("5", { finalizers: ["ghat.dev/revoke-token"], annotations: { touched: "1" } }),
      "update",
    );
    c.onChange(
      "GitHubAppToken",
      token("6", { generation: 2, finalizers: ["ghat.dev/revoke-token"] }),
      "update",
    );
    c.onChange(
      "GitHubAppToken",
      token("7", {
        generation: 2,
        finalizers: ["ghat.dev/revoke-token"],
        deletionTimestamp: "2026-12-01T00:00:00Z",
      }),
      "update",
    );
    expect(added).toEqual(["team/a", "team/a", "team/a", "team/a", "team/a"]);
  });

  it("a write whose echo is overtaken by another change still reconciles for that change", () => {
    const { c, added } = recording();
    c.onChange("GitHubAppToken", token("1"), "add");
    c.secretWritten("team", "a-token", "2");
    // Someone changed the Secret before ghat's own write was seen: a different resourceVersion.
    c.onChange("Secret", secret("3"), "update");
    c.tokenWritten("team", "a", "4");
    c.onChange("GitHubAppToken", token("5", { finalizers: ["ghat.dev/revoke-token", "other"] }), "update");
    expect(added).toEqual(["team/a", "team/a", "team/a"]);
  });

  it("ghat's finalizer appearing before its write's answer reconciles nothing; its removal reconciles", () => {
    const { c, added } = recording();
    c.onChange("GitHubAppToken", token("1"), "add");
    // Under load the watch can show the finalizer before the PATCH that added it has answered.
    c.onChange("GitHubAppToken", token("2", { finalizers: ["ghat.dev/revoke-token"] }), "update");
    c.tokenWritten("team", "a", "2");
    c.onChange("GitHubAppToken", token("3", { finalizers: ["ghat.dev/revoke-token"] }), "update");
    expect(added).toEqual(["team/a"]);
    // Someone else's finalizer is a change; ghat's removed by hand is one too (it goes back).
    c.onChange("GitHubAppToken", token("4", { finalizers: ["ghat.dev/revoke-token", "other"] }), "update");
    c.onChange("GitHubAppToken", token("5", { finalizers: ["other"] }), "update");
    expect(added).toEqual(["team/a", "team/a", "team/a"]);
  });

  it("a Secret's echo seen before its write's answer reconciles nothing; another change, or a failed write, does", () => {
    const { c, added } = recording();
    c.onChange("GitHubAppToken", token("1"), "add");
    // The echo arrives first, then the answer with the same resourceVersion.
    c.secretWriting("team", "a-token");
    c.onChange("Secret", secret("2"), "add");
    c.secretWritten("team", "a-token", "2");
    expect(added).toEqual(["team/a"]);
    // Someone changed the Secret after ghat's write, both seen before the answer.
    c.secretWriting("team", "a-token");
    c.onChange("Secret", secret("3"), "update");
    c.onChange("Secret", secret("4"), "update");
    c.secretWritten("team", "a-token", "3");
    expect(added).toEqual(["team/a", "team/a"]);
    // A write that failed: what was seen meanwhile was someone else's.
    c.secretWriting("team", "a-token");
    c.onChange("Secret", secret("5"), "update");
    c.secretWritten("team", "a-token", undefined);
    expect(added).toEqual(["team/a", "team/a", "team/a"]);
    // A delete is never held.
    c.secretWriting("team", "a-token");
    c.onChange("Secret", secret("6"), "delete");
    expect(added).toEqual(["team/a", "team/a", "team/a", "team/a"]);
    c.secretWritten("team", "a-token", "7");
    // Nothing is left behind: the echo of the last write is recognised as before.
    c.onChange("Secret", secret("7"), "add");
    expect(added).toEqual(["team/a", "team/a", "team/a", "team/a"]);
  });
});

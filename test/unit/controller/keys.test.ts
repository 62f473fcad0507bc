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

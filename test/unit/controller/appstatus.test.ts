import { generateKeyPairSync } from "node:crypto";
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { AppResolution, ResolvedApp } from "../../../src/controller/apps.ts";
import { AppStatusChecker } from "../../../src/controller/appstatus.ts";
import type { AppStatus } from "../../../src/core/appstatus.ts";
import { GhatError } from "../../../src/core/errors.ts";
import type { GitHubAppInfo } from "../../../src/github/types.ts";
import { createLogger } from "../../../src/log.ts";
import { FakeClock } from "../fakeclock.ts";

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const log = createLogger({ level: "error", destination: new Writable({ write: (_c, _e, cb) => cb() }) });

interface Obj {
  metadata: { name: string; namespace?: string; generation: number };
  spec: unknown;
  status?: AppStatus;
}

/** Lets the checker's async chain (resolve, getApp, write) settle without real time passing. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function setup(options: { intervalMs?: number; perNamespace?: { perMinute: number; burst: number } } = {}) {
  const clock = new FakeClock();
  const objects = new Map<string, Obj>();
  const writes: { key: string; status: AppStatus }[] = [];
  const calls: string[] = [];
  let keyId = "fp-1";
  let resolution: (name: string) => AppResolution = () => ({
    ok: true,
    app: { keyId, key: privateKey } as unknown as ResolvedApp,
  });
  let answer: (name: string) => Promise<GitHubAppInfo> = async () => ({
    id: 42,
    name: "Acme CI",
    slug: "acme-ci",
    clientId: undefined,
  });
  let leading = true;
  const checker = new AppStatusChecker({
    clock,
    log,
    app: (kind, ns, name) => objects.get(`${kind}/${ns}/${name}`),
    resolve: async (_kind, _ns, name) => resolution(name),
    getApp: async (app) => {
      calls.push(app.keyId);
      return answer(app.keyId);
    },
    write: async (kind, ns, name, status) => {
      writes.push({ key: `${kind}/${ns}/${name}`, status });
      const obj = objects.get(`${kind}/${ns}/${name}`);
      if (obj) obj.status = status;
    },
    canAct: () => leading,
    intervalMs: options.intervalMs ?? 300_000,
    ...(options.perNamespace ? { perNamespace: options.perNamespace } : {}),
  });
  const add = (name: string, ns = "team", status?: AppStatus) => {
    const obj: Obj = {
      metadata: { name, namespace: ns, generation: 1 },
      spec: { privateKeySecretRef: { name: `${name}-key` } },
    };
    if (status) obj.status = status;
    objects.set(`GitHubApp/${ns}/${name}`, obj);
    checker.onApp("GitHubApp", obj, "add");
    return obj;
  };
  const advance = async (ms: number) => {
    clock.advance(ms);
    await settle();
  };
  return {
    clock,
    checker,
    objects,
    writes,
    calls,
    add,
    advance,
    setKey: (id: string) => {
      keyId = id;
    },
    setResolution: (f: typeof resolution) => {
      resolution = f;
    },
    setAnswer: (f: typeof answer) => {
      answer = f;
    },
    setLeading: (v: boolean) => {
      leading = v;
    },
  };
}

describe("App status", () => {
  it("a new App is checked with GET /app once and reported Ready with its id and slug", async () => {
    const t = setup();
    t.add("app");
    await t.advance(1_000);
    expect(t.calls).toEqual(["fp-1"]);
    expect(t.writes).toHaveLength(1);
    const status = t.writes[0]?.status;
    expect(status).toMatchObject({
      observedGeneration: 1,
      appId: 42,
      slug: "acme-ci",
      keyFingerprint: "fp-1",
    });
    expect(status?.conditions?.[0]).toMatchObject({ type: "Ready", status: "True", reason: "Verified" });
  });

  it("asks GitHub again only after the interval, and writes nothing when nothing changed", async () => {
    const t = setup({ intervalMs: 300_000 });
    t.add("app");
    await t.advance(1_000);
    await t.advance(299_000);
    expect(t.calls).toHaveLength(1);
    await t.advance(1_000);
    expect(t.calls).toHaveLength(2);
    expect(t.writes).toHaveLength(1);
    // Its own status write comes back as an update of the same generation: no extra check.
    const obj = t.objects.get("GitHubApp/team/app");
    if (obj) t.checker.onApp("GitHubApp", obj, "update");
    await t.advance(10_000);
    expect(t.calls).toHaveLength(2);
  });

  it("after a restart, an App already Verified for this generation costs no GitHub call until its interval", async () => {
    const first = setup();
    first.add("app");
    await first.advance(1_000);
    const stored = first.writes[0]?.status;
    const t = setup();
    t.add("app", "team", stored);
    await t.advance(299_000);
    expect(t.calls).toEqual([]);
    expect(t.writes).toEqual([]);
    await t.advance(2_000);
    expect(t.calls).toHaveLength(1);
  });

  it("a rotated key is checked as soon as its Secret changes", async () => {
    const t = setup();
    t.add("app");
    await t.advance(1_000);
    t.setKey("fp-2");
    t.checker.onSecret("team", "app-key");
    await t.advance(1_000);
    expect(t.calls).toEqual(["fp-1", "fp-2"]);
    expect(t.writes.at(-1)?.status.keyFingerprint).toBe("fp-2");
    // A Secret of the same name in another namespace is not this App's.
    t.checker.onSecret("other", "app-key");
    await t.advance(5_000);
    expect(t.calls).toHaveLength(2);
  });

  it("a key problem is reported with its reason and message, and keeps what GitHub said before", async () => {
    const t = setup();
    t.add("app");
    await t.advance(1_000);
    t.setResolution(() => ({
      ok: false,
      code: "InvalidPrivateKey",
      message: "the private key could not be read",
    }));
    t.checker.onSecret("team", "app-key");
    await t.advance(1_000);
    const status = t.writes.at(-1)?.status;
    expect(status?.conditions?.[0]).toMatchObject({
      status: "False",
      reason: "InvalidPrivateKey",
      message: "the private key could not be read",
    });
    expect(status?.appId).toBe(42);
    // Waits for a change (or the interval), not a hot loop.
    const writes = t.writes.length;
    await t.advance(60_000);
    expect(t.writes.length).toBe(writes);
  });

  it("a GitHub outage is retried with backoff from 15 s, and recovers", async () => {
    const t = setup();
    t.setAnswer(async () => {
      throw new GhatError("GitHubUnavailable", "GitHub answered 503");
    });
    t.add("app");
    await t.advance(1_000);
    expect(t.writes.at(-1)?.status.conditions?.[0]).toMatchObject({
      status: "False",
      reason: "GitHubUnavailable",
    });
    await t.advance(15_000);
    expect(t.calls).toHaveLength(2);
    await t.advance(29_000);
    expect(t.calls).toHaveLength(2);
    t.setAnswer(async () => ({ id: 42, name: "x", slug: "acme-ci", clientId: undefined }));
    await t.advance(1_000);
    expect(t.calls).toHaveLength(3);
    expect(t.writes.at(-1)?.status.conditions?.[0]).toMatchObject({ status: "True", reason: "Verified" });
  });

  it("a JWT GitHub refuses waits for a change instead of retrying", async () => {
    const t = setup();
    t.setAnswer(async () => {
      throw new GhatError("JWTRejected", "GitHub refused the App's JWT");
    });
    t.add("app");
    await t.advance(1_000);
    await t.advance(200_000);
    expect(t.calls).toHaveLength(1);
  });

  it("a namespace with many Apps spends only its own budget of GET /app calls", async () => {
    const t = setup({ perNamespace: { perMinute: 6, burst: 3 } });
    for (let i = 0; i < 10; i++) t.add(`noisy-${i}`, "noisy");
    t.add("quiet", "quiet");
    await t.advance(1_000);
    // The first three of the noisy namespace and the quiet one; the rest wait for budget.
    expect(t.calls).toHaveLength(4);
    expect(t.writes.map((w) => w.key)).toContain("GitHubApp/quiet/quiet");
    await t.advance(10_000);
    expect(t.calls).toHaveLength(5);
    for (let i = 0; i < 6; i++) await t.advance(10_000);
    expect(t.calls).toHaveLength(11);
  });

  it("checks nothing while another replica leads, and catches up when this one leads", async () => {
    const t = setup();
    t.setLeading(false);
    t.add("app");
    await t.advance(5_000);
    expect(t.calls).toEqual([]);
    t.setLeading(true);
    t.checker.resume();
    await t.advance(0);
    expect(t.calls).toHaveLength(1);
  });

  it("a deleted App is forgotten", async () => {
    const t = setup();
    const obj = t.add("app");
    await t.advance(1_000);
    t.checker.onApp("GitHubApp", obj, "delete");
    t.objects.delete("GitHubApp/team/app");
    await t.advance(600_000);
    expect(t.calls).toHaveLength(1);
    expect(t.checker.size).toBe(0);
  });

  it("a bug in a check is reported as InternalError and retried, never thrown", async () => {
    const t = setup();
    t.setResolution(() => {
      throw new TypeError("boom");
    });
    t.add("app");
    await t.advance(1_000);
    expect(t.writes.at(-1)?.status.conditions?.[0]).toMatchObject({
      status: "False",
      reason: "InternalError",
    });
    expect(JSON.stringify(t.writes)).not.toContain("boom");
  });
});

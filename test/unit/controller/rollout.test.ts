import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { type DeliveryInput, Rollouts } from "../../../src/controller/rollout.ts";
import {
  deliveryCondition,
  needsRestart,
  restartAnnotation,
  restartedAtAnnotation,
  secretsReadFromEnv,
  type Workload,
} from "../../../src/core/delivery.ts";
import { GhatError } from "../../../src/core/errors.ts";
import type { WorkloadApi } from "../../../src/kube/workloads.ts";
import { createLogger } from "../../../src/log.ts";
import { FakeClock } from "../fakeclock.ts";

const log = createLogger({ level: "silent", destination: new Writable({ write: (_c, _e, cb) => cb() }) });

function deployment(name: string, podSpec: Workload["podSpec"] = {}, annotations = {}): Workload {
  return { kind: "Deployment", name, templateAnnotations: { ...annotations }, podSpec };
}

class FakeWorkloads implements WorkloadApi {
  items: Workload[] = [];
  lists = 0;
  patches: { name: string; at: number; annotations: Record<string, string> }[] = [];
  forbidden = false;
  readonly clock: FakeClock;
  constructor(clock: FakeClock) {
    this.clock = clock;
  }
  async list(): Promise<Workload[]> {
    this.lists++;
    if (this.forbidden) throw new GhatError("KubernetesError", "HTTP 403: forbidden", { status: 403 });
    return structuredClone(this.items);
  }
  async annotateTemplate(_ns: string, _kind: string, name: string, annotations: Record<string, string>) {
    this.patches.push({ name, at: this.clock.now(), annotations });
    const w = this.items.find((i) => i.name === name);
    if (!w) throw new GhatError("KubernetesError", "HTTP 404: not found", { status: 404 });
    Object.assign(w.templateAnnotations, annotations);
  }
}

function setup(gapMs = 5_000, canAct: () => boolean = () => true) {
  const clock = new FakeClock();
  const api = new FakeWorkloads(clock);
  const changed: string[] = [];
  const rollouts = new Rollouts({
    api,
    clock,
    log,
    minGapMs: gapMs,
    canAct,
    changed: (keys) => changed.push(...keys),
  });
  const input = (over: Partial<DeliveryInput> = {}): DeliveryInput => ({
    key: "team/ci",
    namespace: "team",
    tokenName: "ci",
    generation: 1,
    secretNames: ["ci-token"],
    rollout: {
      workloads: [
        { kind: "Deployment", name: "web" },
        { kind: "Deployment", name: "worker" },
      ],
      stagger: "30s",
      minInterval: "10m",
    },
    tokenHash: "h1",
    changed: false,
    ...over,
  });
  return { clock, api, rollouts, input, changed };
}

const envPod = {
  containers: [
    { name: "app", env: [{ name: "GH_TOKEN", valueFrom: { secretKeyRef: { name: "ci-token" } } }] },
  ],
};

describe("delivery rules", () => {
  it("finds Secrets read through env and envFrom, in containers and init containers", () => {
    expect(
      secretsReadFromEnv(
        {
          containers: [{ envFrom: [{ secretRef: { name: "b" } }] }],
          initContainers: [{ env: [{ valueFrom: { secretKeyRef: { name: "a" } } }] }],
        },
        ["a", "b", "c"],
      ),
    ).toEqual(["a", "b"]);
    expect(secretsReadFromEnv({ containers: [{ env: [{ name: "X" }] }] }, ["a"])).toEqual([]);
    expect(secretsReadFromEnv(undefined, ["a"])).toEqual([]);
  });

  it("restarts only for a changed token, and uses a valid annotation key for any token name", () => {
    const w = deployment("web");
    expect(needsRestart(w, "ci", "h1", false)).toBe(false);
    expect(needsRestart(w, "ci", "h1", true)).toBe(true);
    w.templateAnnotations[restartAnnotation("ci")] = "h1";
    expect(needsRestart(w, "ci", "h1", true)).toBe(false);
    expect(needsRestart(w, "ci", "h2", false)).toBe(true);
    expect(restartAnnotation("ci")).toBe("restarted-for.ghat.dev/ci");
    expect(restartAnnotation("a.b")).toMatch(/^restarted-for\.ghat\.dev\/[0-9a-f]{16}$/);
    expect(restartAnnotation("x".repeat(200))).toMatch(/^restarted-for\.ghat\.dev\/[0-9a-f]{16}$/);
  });

  it("says nothing when nothing is relevant, and prefers problems over env warnings", () => {
    const base = { envReaders: [], scheduled: [], problems: [], relevant: false };
    expect(deliveryCondition(base)).toBeUndefined();
    expect(deliveryCondition({ ...base, relevant: true })).toMatchObject({
      status: "True",
      reason: "Delivered",
    });
    expect(
      deliveryCondition({ ...base, relevant: true, envReaders: ["Deployment/x reads s"] }),
    ).toMatchObject({
      status: "False",
      reason: "EnvironmentVariables",
    });
    expect(deliveryCondition({ ...base, relevant: true, envReaders: ["e"], problems: ["p"] })).toMatchObject({
      reason: "RestartFailed",
      message: "p",
    });
  });
});

describe("Rollouts", () => {
  it("warns about unlisted workloads reading the Secret through env vars", async () => {
    const { api, rollouts, input } = setup();
    api.items = [deployment("reader", envPod), deployment("files", { containers: [{ name: "x" }] })];
    const report = await rollouts.check(input({ rollout: undefined }));
    expect(report.envReaders).toEqual(["Deployment/reader reads ci-token"]);
    expect(report.relevant).toBe(true);
  });

  it("does not restart on first issue, restarts staggered after a rotation, and only once per token", async () => {
    const { api, rollouts, input, clock, changed } = setup();
    api.items = [deployment("web", envPod), deployment("worker")];
    expect((await rollouts.check(input())).scheduled).toEqual([]);
    const report = await rollouts.check(input({ tokenHash: "h2", changed: true }));
    expect(report.scheduled).toEqual(["Deployment/web", "Deployment/worker"]);
    expect(report.envReaders).toEqual([]); // web is listed: it is restarted, not stale
    const start = clock.now();
    clock.advance(0);
    await expect.poll(() => api.patches.length).toBe(1);
    clock.advance(30_000);
    await expect.poll(() => api.patches.length).toBe(2);
    expect(api.patches.map((p) => [p.name, p.at - start])).toEqual([
      ["web", 0],
      ["worker", 30_000],
    ]);
    expect(api.patches[0]?.annotations).toMatchObject({
      [restartAnnotation("ci")]: "h2",
      [restartedAtAnnotation]: "2026-11-24T12:00:00Z",
    });
    expect(changed).toEqual(["team/ci", "team/ci"]);
    // The same token again (a later reconcile, or a new leader): nothing to do.
    clock.advance(60_000);
    const again = await rollouts.check(input({ tokenHash: "h2", changed: false, generation: 2 }));
    expect(again.scheduled).toEqual([]);
    expect(api.patches).toHaveLength(2);
  });

  it("a replica that stepped down restarts nothing: the new leader re-derives restarts", async () => {
    let leading = true;
    const { api, rollouts, input, clock } = setup(5_000, () => leading);
    api.items = [deployment("web", envPod), deployment("worker")];
    await rollouts.check(input());
    const report = await rollouts.check(input({ tokenHash: "h2", changed: true }));
    expect(report.scheduled).toEqual(["Deployment/web", "Deployment/worker"]);
    leading = false;
    clock.advance(0);
    clock.advance(60_000);
    await Promise.resolve();
    expect(api.patches).toEqual([]);
  });

  it("paces restarts operator-wide and waits out a workload's minimum interval", async () => {
    const { api, rollouts, input, clock } = setup(20_000);
    const recent = new Date(clock.now() - 60_000).toISOString();
    api.items = [
      deployment("web", {}, { [restartedAtAnnotation]: recent }),
      deployment("worker"),
      deployment("other"),
    ];
    await rollouts.check(input({ tokenHash: "h2", changed: true }));
    await rollouts.check(
      input({
        key: "team/b",
        tokenName: "b",
        rollout: { workloads: [{ kind: "Deployment", name: "other" }], stagger: "0s", minInterval: "0s" },
        tokenHash: "x",
        changed: true,
      }),
    );
    clock.advance(0);
    await expect.poll(() => api.patches.length).toBe(1);
    // Timers fire one by one: each restart's async patch arms the next timer.
    clock.advance(30_000);
    await expect.poll(() => api.patches.length).toBe(2);
    clock.advance(10 * 60_000);
    await expect.poll(() => api.patches.length).toBe(3);
    const [first, second, third] = api.patches;
    expect(first?.name).toBe("other");
    // worker follows after the operator-wide gap; web waits until 10 min after its last restart.
    expect(second?.name).toBe("worker");
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(20_000);
    expect(third?.name).toBe("web");
    expect(third?.at).toBe(Date.parse(recent) + 10 * 60_000);
  });

  it("reports a missing workload and a failed restart, and lists each namespace once per TTL", async () => {
    const { api, rollouts, input, clock } = setup();
    api.items = [deployment("web")];
    const report = await rollouts.check(input({ tokenHash: "h2", changed: true }));
    expect(report.problems).toEqual(["Deployment/worker not found in team"]);
    api.items = [];
    clock.advance(0);
    await expect
      .poll(async () => (await rollouts.check(input({ tokenHash: "h2" }))).problems)
      .toHaveLength(2);
    expect(api.lists).toBe(1);
  });

  it("turns itself off for ten minutes without RBAC, and says so only to tokens asking for restarts", async () => {
    const { api, rollouts, input, clock } = setup();
    api.forbidden = true;
    expect((await rollouts.check(input({ rollout: undefined }))).relevant).toBe(false);
    const asked = await rollouts.check(input({ key: "team/b", tokenName: "b" }));
    expect(asked.problems[0]).toContain("workloads.enabled=true");
    expect(api.lists).toBe(1);
    clock.advance(11 * 60_000);
    await rollouts.check(input({ key: "team/c", tokenName: "c", rollout: undefined }));
    expect(api.lists).toBe(2);
  });

  it("answers every concurrent check in a namespace without RBAC the same way (one list, no error)", async () => {
    const { api, rollouts, input } = setup();
    api.forbidden = true;
    const reports = await Promise.all(
      ["a", "b", "c"].map((name) =>
        rollouts.check(input({ key: `team/${name}`, tokenName: name, rollout: undefined })),
      ),
    );
    expect(reports.map((r) => r.relevant)).toEqual([false, false, false]);
    expect(api.lists).toBe(1);
  });
});

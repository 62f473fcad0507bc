import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { LeaderElector, type Lease, type LeaseApi, microTime } from "../../../src/kube/lease.ts";
import { createLogger } from "../../../src/log.ts";
import { FakeClock } from "../fakeclock.ts";

/** One Lease in memory with optimistic concurrency, counting each call. */
class FakeLeases implements LeaseApi {
  lease: Lease | undefined;
  rv = 0;
  calls = { read: 0, create: 0, replace: 0 };

  async read() {
    this.calls.read++;
    return this.lease ? structuredClone(this.lease) : undefined;
  }
  async create(_ns: string, lease: Lease) {
    this.calls.create++;
    if (this.lease) return undefined;
    this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(++this.rv) } };
    return structuredClone(this.lease);
  }
  async replace(_ns: string, _name: string, lease: Lease) {
    this.calls.replace++;
    if (lease.metadata?.resourceVersion !== this.lease?.metadata?.resourceVersion) return undefined;
    this.lease = { ...lease, metadata: { ...lease.metadata, resourceVersion: String(++this.rv) } };
    return structuredClone(this.lease);
  }
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

function elector(api: FakeLeases, clock: FakeClock, identity: string) {
  const events: string[] = [];
  const e = new LeaderElector({
    api,
    namespace: "ghat-system",
    name: "ghat-leader",
    identity,
    clock,
    log: createLogger({ level: "silent", destination: new Writable({ write: (_c, _e, cb) => cb() }) }),
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    onStartedLeading: () => events.push("started"),
    onStoppedLeading: () => events.push("stopped"),
  });
  return { e, events };
}

async function tick(clock: FakeClock, ms: number) {
  clock.advance(ms);
  for (let i = 0; i < 5; i++) await settle();
}

/** An elector that became leader on an empty Lease. */
async function leading() {
  const clock = new FakeClock();
  const api = new FakeLeases();
  const { e, events } = elector(api, clock, "a");
  e.start();
  await tick(clock, 0);
  return { clock, api, e, events };
}

describe("LeaderElector", () => {
  it("renews from the Lease it last wrote: one PUT per retry period, no GET", async () => {
    const { clock, api, e, events } = await leading();
    expect(events).toEqual(["started"]);
    const before = { ...api.calls };
    for (let i = 0; i < 10; i++) await tick(clock, 2_000);
    expect(api.calls.read - before.read).toBe(0);
    expect(api.calls.replace - before.replace).toBe(10);
    expect(api.lease?.spec?.holderIdentity).toBe("a");
    expect(api.lease?.spec?.renewTime).toBe(microTime(clock.now()));
    await e.stop();
  });

  it("reads again when its renewal conflicts, and steps down when another holds the Lease", async () => {
    const { clock, api, e, events } = await leading();
    // Another replica took the Lease (as after a partition): the fast renewal conflicts.
    api.lease = {
      ...api.lease,
      metadata: { ...api.lease?.metadata, resourceVersion: String(++api.rv) },
      spec: { ...api.lease?.spec, holderIdentity: "b", renewTime: microTime(clock.now()) },
    };
    const reads = api.calls.read;
    await tick(clock, 2_000);
    expect(api.calls.read).toBe(reads + 1);
    expect(api.lease?.spec?.holderIdentity).toBe("b");
    for (let i = 0; i < 6; i++) await tick(clock, 2_000);
    expect(events).toEqual(["started", "stopped"]);
    await e.stop();
  });

  it("writes MicroTime as RFC 3339 with microseconds", () => {
    expect(microTime(Date.parse("2026-12-01T18:33:17.123Z"))).toBe("2026-12-01T18:33:17.123000Z");
  });
});

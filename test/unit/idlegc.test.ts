import { describe, expect, it } from "vitest";
import { type Gc, IdleGc } from "../../src/idlegc.ts";
import { FakeClock } from "./fakeclock.ts";

const MiB = 2 ** 20;

function harness(heap = { total: 40 * MiB, used: 20 * MiB }) {
  const clock = new FakeClock();
  const calls: Parameters<Gc>[0][] = [];
  const compacted: number[] = [];
  const idle = new IdleGc({
    clock,
    gc: (options) => {
      calls.push(options);
      // What a compaction does: the heap shrinks to about what is used.
      heap.total = heap.used + MiB;
    },
    heap: () => ({ ...heap }),
    onCompacted: (before, after) => compacted.push(before.total - after.total),
  });
  return { clock, calls, compacted, idle, heap };
}

describe("IdleGc", () => {
  it("compacts once after work has stopped for the quiet time, and not while it goes on", () => {
    const { clock, calls, compacted, idle } = harness();
    idle.start();
    // A reconcile every 2 s for a minute: never quiet.
    for (let t = 0; t < 60_000; t += 2_000) {
      idle.busy();
      clock.advance(2_000);
    }
    expect(calls).toHaveLength(0);
    clock.advance(20_000);
    expect(calls).toEqual([{ type: "major", execution: "sync", flavor: "last-resort" }]);
    expect(compacted).toEqual([19 * MiB]);
    // The heap is back near its use: nothing more while idle, however long.
    clock.advance(60 * 60_000);
    expect(calls).toHaveLength(1);
    idle.stop();
    expect(clock.pendingTimers).toBe(0);
  });

  it("leaves a heap that holds little beyond its use alone", () => {
    const { calls, idle } = harness({ total: 25 * MiB, used: 20 * MiB });
    expect(idle.check()).toBe(false);
    expect(calls).toHaveLength(0);
  });

  it("compacts at most once a minute, whatever the pattern of work", () => {
    const { clock, calls, idle, heap } = harness();
    idle.start();
    // Bursts 11 s apart, each growing the heap again: a compaction after each would be 5 a minute.
    for (let i = 0; i < 30; i++) {
      idle.busy();
      heap.total = heap.used + 30 * MiB;
      clock.advance(11_000);
    }
    expect(calls.length).toBeGreaterThan(0);
    expect(calls.length).toBeLessThanOrEqual(Math.ceil((30 * 11_000) / 60_000));
  });

  it("does nothing without Node's gc (no --expose-gc), and a clock that moved back holds nothing off for long", () => {
    const clock = new FakeClock();
    const none = new IdleGc({ clock, gc: undefined, heap: () => ({ total: 100 * MiB, used: MiB }) });
    none.start();
    expect(clock.pendingTimers).toBe(0);
    expect(none.check()).toBe(false);

    // A clock read by hand: it goes back an hour after a compaction.
    let now = Date.parse("2026-11-24T12:00:00Z");
    let calls = 0;
    const idle = new IdleGc({
      clock: { now: () => now, setTimer: () => () => undefined },
      gc: () => {
        calls++;
      },
      heap: () => ({ total: 40 * MiB, used: 20 * MiB }),
    });
    now += 20_000;
    expect(idle.check()).toBe(true);
    now -= 60 * 60_000;
    idle.busy();
    now += 10_000;
    // Quiet again for the quiet time: the next compaction does not wait for the clock to catch up.
    expect(idle.check()).toBe(true);
    expect(calls).toBe(2);
  });
});

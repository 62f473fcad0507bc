import { describe, expect, it } from "vitest";
import { WorkQueue } from "../../../src/controller/queue.ts";
import { FakeClock } from "../fakeclock.ts";

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe("WorkQueue", () => {
  it("collapses duplicate adds of a waiting key into one run", async () => {
    const seen: string[] = [];
    const gate = deferred();
    const q = new WorkQueue({
      clock: new FakeClock(),
      workers: 1,
      process: async (k) => {
        seen.push(k);
        if (k === "a") await gate.promise;
      },
    });
    q.add("a");
    q.add("b");
    q.add("b");
    q.add("b");
    gate.resolve();
    await q.idle();
    expect(seen).toEqual(["a", "b"]);
  });

  it("never runs one key twice at once, and runs it again if it was added meanwhile", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    let runs = 0;
    const gate = deferred();
    const q = new WorkQueue({
      clock: new FakeClock(),
      workers: 4,
      process: async () => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        runs++;
        if (runs === 1) await gate.promise;
        inFlight--;
      },
    });
    q.add("k");
    q.add("k");
    q.add("k");
    gate.resolve();
    await q.idle();
    expect(maxInFlight).toBe(1);
    expect(runs).toBe(2);
  });

  it("runs a delayed key when its time comes, keeping only the earliest time", async () => {
    const clock = new FakeClock();
    const seen: string[] = [];
    const q = new WorkQueue({ clock, workers: 1, process: async (k) => void seen.push(k) });
    q.addAt("k", clock.now() + 10_000);
    q.addAt("k", clock.now() + 5_000);
    q.addAt("k", clock.now() + 20_000);
    expect(q.scheduledAt("k")).toBe(clock.now() + 5_000);
    clock.advance(4_999);
    await q.idle();
    expect(seen).toEqual([]);
    clock.advance(1);
    await q.idle();
    expect(seen).toEqual(["k"]);
    clock.advance(60_000);
    await q.idle();
    expect(seen).toEqual(["k"]);
  });

  it("holds one timer for any number of delayed keys and runs each at its own time", async () => {
    const clock = new FakeClock();
    const ranAt = new Map<string, number>();
    const q = new WorkQueue({ clock, workers: 4_000, process: async (k) => void ranAt.set(k, clock.now()) });
    const start = clock.now();
    const due = new Map<string, number>();
    for (let i = 0; i < 2_000; i++) {
      due.set(`ns/k${i}`, start + 1_000 + ((i * 7919) % 2_000) * 10);
      q.addAt(`ns/k${i}`, due.get(`ns/k${i}`) as number);
    }
    expect(clock.pendingTimers).toBe(1);
    q.forget("ns/k5");
    for (let t = 0; t <= 21_000; t += 500) {
      clock.advance(500);
      await q.idle();
      expect(clock.pendingTimers).toBeLessThanOrEqual(1);
    }
    expect(ranAt.size).toBe(1_999);
    expect(ranAt.has("ns/k5")).toBe(false);
    // Each ran at its due time exactly (the fake clock fires timers at their time).
    for (const [k, at] of ranAt) expect(at, k).toBe(due.get(k));
    expect(clock.pendingTimers).toBe(0);
  });

  it("an earlier delayed add re-arms the timer; a later one does not delay an earlier", async () => {
    const clock = new FakeClock();
    const seen: string[] = [];
    const q = new WorkQueue({ clock, workers: 1, process: async (k) => void seen.push(k) });
    q.addAt("a", clock.now() + 10_000);
    q.addAt("b", clock.now() + 2_000);
    q.addAt("c", clock.now() + 30_000);
    clock.advance(2_000);
    await q.idle();
    expect(seen).toEqual(["b"]);
    clock.advance(8_000);
    await q.idle();
    expect(seen).toEqual(["b", "a"]);
    clock.advance(19_999);
    await q.idle();
    expect(seen).toEqual(["b", "a"]);
    clock.advance(1);
    await q.idle();
    expect(seen).toEqual(["b", "a", "c"]);
  });

  it("an immediate add replaces a pending delayed one", async () => {
    const clock = new FakeClock();
    const seen: string[] = [];
    const q = new WorkQueue({ clock, workers: 1, process: async (k) => void seen.push(k) });
    q.addAt("k", clock.now() + 10_000);
    q.add("k");
    await q.idle();
    clock.advance(10_000);
    await q.idle();
    expect(seen).toEqual(["k"]);
    expect(clock.pendingTimers).toBe(0);
  });

  it("keeps working when process throws", async () => {
    const seen: string[] = [];
    const q = new WorkQueue({
      clock: new FakeClock(),
      workers: 1,
      process: async (k) => {
        seen.push(k);
        if (k === "bad") throw new Error("boom");
      },
    });
    q.add("bad");
    q.add("good");
    await q.idle();
    expect(seen).toEqual(["bad", "good"]);
  });

  it("shutdown waits for in-flight work and drops the rest", async () => {
    const gate = deferred();
    const seen: string[] = [];
    const clock = new FakeClock();
    const q = new WorkQueue({
      clock,
      workers: 1,
      process: async (k) => {
        seen.push(k);
        await gate.promise;
      },
    });
    q.add("a");
    q.add("b");
    q.addAt("c", clock.now() + 1000);
    let done = false;
    const stopping = q.shutdown().then(() => {
      done = true;
    });
    await Promise.resolve();
    expect(done).toBe(false);
    gate.resolve();
    await stopping;
    clock.advance(5000);
    expect(seen).toEqual(["a"]);
  });

  it("while paused keeps keys (deduplicated) and runs them on resume", async () => {
    const seen: string[] = [];
    const q = new WorkQueue({ clock: new FakeClock(), workers: 2, process: async (k) => void seen.push(k) });
    q.pause();
    q.add("a");
    q.add("b");
    q.add("a");
    await q.idle();
    expect(seen).toEqual([]);
    expect(q.depth).toBe(2);
    q.resume();
    await q.idle();
    expect(seen.sort()).toEqual(["a", "b"]);
  });

  it("serves namespaces in turn: one namespace's backlog does not delay another's key", async () => {
    const seen: string[] = [];
    const q = new WorkQueue({ clock: new FakeClock(), workers: 1, process: async (k) => void seen.push(k) });
    q.pause();
    for (let i = 0; i < 5; i++) q.add(`flood/t${i}`);
    q.add("victim/t");
    q.resume();
    await q.idle();
    expect(seen.slice(0, 2)).toEqual(["flood/t0", "victim/t"]);
    expect(seen).toHaveLength(6);
  });

  it("never gives one namespace every worker", async () => {
    const gate = deferred();
    const running: string[] = [];
    const q = new WorkQueue({
      clock: new FakeClock(),
      workers: 4,
      process: async (k) => {
        running.push(k);
        if (k.startsWith("attacker/")) await gate.promise;
      },
    });
    for (let i = 0; i < 8; i++) q.add(`attacker/t${i}`);
    q.add("victim/t");
    await expect.poll(() => running.includes("victim/t")).toBe(true);
    expect(running.filter((k) => k.startsWith("attacker/"))).toHaveLength(3);
    gate.resolve();
    await q.idle();
    expect(running).toHaveLength(9);
  });

  it("gives a worker back when a reconcile overruns its deadline, without running that key twice", async () => {
    const clock = new FakeClock();
    const stuck = deferred();
    const overrun: string[] = [];
    let stuckRuns = 0;
    const seen: string[] = [];
    const q = new WorkQueue({
      clock,
      workers: 1,
      perGroup: 1,
      deadlineMs: 30_000,
      onOverrun: (k) => overrun.push(k),
      process: async (k) => {
        seen.push(k);
        if (k === "a/stuck") {
          stuckRuns++;
          await stuck.promise;
        }
      },
    });
    q.add("a/stuck");
    q.add("b/victim");
    await Promise.resolve();
    expect(seen).toEqual(["a/stuck"]);
    clock.advance(30_000);
    await expect.poll(() => seen).toEqual(["a/stuck", "b/victim"]);
    expect(overrun).toEqual(["a/stuck"]);
    q.add("a/stuck");
    await q.idle();
    expect(stuckRuns).toBe(1);
    stuck.resolve();
    await expect.poll(() => stuckRuns).toBe(2);
  });

  it("shutdown with a bound returns even when work is stuck", async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock, workers: 1, process: () => new Promise<void>(() => {}) });
    q.add("a/stuck");
    let done = false;
    const stopping = q.shutdown(5_000).then(() => {
      done = true;
    });
    await Promise.resolve();
    expect(done).toBe(false);
    clock.advance(5_000);
    await stopping;
    expect(done).toBe(true);
  });
});

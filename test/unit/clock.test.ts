import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { maxTimerChunkMs, systemClock } from "../../src/clock.ts";

const day = 24 * 60 * 60_000;

describe("systemClock.setTimer", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it.each([
    ["one ms over the limit", maxTimerChunkMs + 1],
    ["just over 2^31 ms", 2 ** 31 + 1_000],
    ["100 days", 100 * day],
    ["a year", 365 * day],
  ])("waits the full delay of %s, re-arming in chunks", (_what, ms) => {
    const setTimeoutSpy = vi.spyOn(globalThis, "setTimeout");
    const fn = vi.fn();
    systemClock.setTimer(ms, fn);
    vi.advanceTimersByTime(ms - 1);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(10 * maxTimerChunkMs);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
    // Node (and fake timers) would fire anything longer at once.
    for (const call of setTimeoutSpy.mock.calls) expect(call[1]).toBeLessThanOrEqual(maxTimerChunkMs);
    expect(setTimeoutSpy).toHaveBeenCalledTimes(Math.ceil(ms / maxTimerChunkMs));
  });

  it.each([0, 1, 1_000, maxTimerChunkMs])("fires a delay of %d ms on time, in one chunk", (ms) => {
    const fn = vi.fn();
    systemClock.setTimer(ms, fn);
    if (ms > 0) {
      vi.advanceTimersByTime(ms - 1);
      expect(fn).not.toHaveBeenCalled();
    }
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it.each([
    ["negative", -5_000],
    ["NaN", Number.NaN],
    ["-Infinity", Number.NEGATIVE_INFINITY],
  ])("fires a %s delay soon, never synchronously", (_what, ms) => {
    const fn = vi.fn();
    systemClock.setTimer(ms, fn);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("never fires an infinite delay, and does not spin waiting for it", () => {
    const setTimeoutSpy = vi.spyOn(globalThis, "setTimeout");
    const fn = vi.fn();
    systemClock.setTimer(Number.POSITIVE_INFINITY, fn);
    vi.advanceTimersByTime(1_000 * day);
    expect(fn).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(1);
    expect(setTimeoutSpy.mock.calls.length).toBeLessThanOrEqual(
      Math.ceil((1_000 * day) / maxTimerChunkMs) + 1,
    );
  });

  it.each([
    ["in its first chunk", 1_000],
    ["after it re-armed", maxTimerChunkMs + 1_000],
    ["in its last chunk", 3 * maxTimerChunkMs - 1],
  ])("cancels a long timer %s", (_what, after) => {
    const fn = vi.fn();
    const cancel = systemClock.setTimer(3 * maxTimerChunkMs, fn);
    vi.advanceTimersByTime(after);
    cancel();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10 * maxTimerChunkMs);
    expect(fn).not.toHaveBeenCalled();
    cancel();
  });

  it("cancels a short timer, and a cancel after firing is harmless", () => {
    const fn = vi.fn();
    systemClock.setTimer(10, fn)();
    vi.advanceTimersByTime(100);
    expect(fn).not.toHaveBeenCalled();

    const cancel = systemClock.setTimer(10, fn);
    vi.advanceTimersByTime(10);
    cancel();
    expect(fn).toHaveBeenCalledTimes(1);
  });
});

/**
 * Time is a dependency: everything that needs "now" or a timer takes a Clock, so tests can
 * drive time explicitly. This file is the only place allowed to read the system clock.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Like setTimeout, but cancellable through the returned function. */
  setTimer(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref?.();
    return () => clearTimeout(t);
  },
};

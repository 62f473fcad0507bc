/**
 * Time is a dependency: everything that needs "now" or a timer takes a Clock, so tests can
 * drive time explicitly. This file is the only place allowed to read the system clock.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Like setTimeout, but cancellable through the returned function. Any delay is safe: one
   * above `maxTimerChunkMs` waits its full length, a negative or NaN one fires on a later
   * turn of the event loop (never synchronously), and Infinity never fires.
   */
  setTimer(ms: number, fn: () => void): () => void;
}

/**
 * The longest single setTimeout Node honours (2^31-1 ms, about 24.8 days). A longer one
 * would fire at once with a TimeoutOverflowWarning, so longer timers re-arm in chunks.
 */
export const maxTimerChunkMs = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    // What is left after the current chunk; counted down, so no clock read is needed.
    let left = Number.isNaN(ms) ? 0 : Math.max(0, ms);
    let cancelled = false;
    let current: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      const chunk = Math.min(left, maxTimerChunkMs);
      left -= chunk;
      current = setTimeout(() => {
        current = undefined;
        if (cancelled) return;
        if (left > 0) arm();
        else fn();
      }, chunk);
      current.unref?.();
    };
    arm();
    return () => {
      cancelled = true;
      if (current !== undefined) clearTimeout(current);
      current = undefined;
    };
  },
};

import type { Clock } from "./clock.ts";

/** V8's `gc` (Node's --expose-gc) with the options ghat uses. */
export type Gc = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;

/** The V8 heap's size and use, in bytes (node:v8's getHeapStatistics). */
export type HeapSize = () => { total: number; used: number };

export interface IdleGcOptions {
  clock: Clock;
  /** Undefined when Node runs without --expose-gc: nothing is done then. */
  gc: Gc | undefined;
  heap: HeapSize;
  /** Quiet this long (no reconcile) before a compaction. */
  quietMs?: number;
  /** Heap reserved beyond what is used that is worth giving back. */
  slackBytes?: number;
  /** Least time between two compactions. */
  minIntervalMs?: number;
  /** How often the conditions are checked. */
  checkMs?: number;
  /** Told of each compaction: the heap before and after, and how long it took. */
  onCompacted?: (before: { total: number; used: number }, after: { total: number; used: number }) => void;
}

/**
 * Gives the heap a burst grew back to the system once the operator is quiet again.
 *
 * The image runs Node without `--optimize-for-size`: that flag pins V8's young generation at
 * 1 MiB, and the scavenges it forces cost about a seventh of the CPU of a burst of new tokens
 * (bench/notes.md). Without it V8 keeps the pages a burst grew its heap to: its ordinary
 * collections free objects, not pages. So, when no reconcile has run for `quietMs` and the
 * heap holds more than `slackBytes` it does not use, one memory-reducing collection (V8's
 * "last resort": compacting, releasing free pages) runs, at most once per `minIntervalMs`.
 * It costs some tens of milliseconds, once after a burst; at idle nothing is reserved beyond
 * use and nothing runs.
 */
export class IdleGc {
  readonly #o: Required<Omit<IdleGcOptions, "gc" | "onCompacted">> &
    Pick<IdleGcOptions, "gc" | "onCompacted">;
  #lastWork = Number.NEGATIVE_INFINITY;
  #lastGc = Number.NEGATIVE_INFINITY;
  #cancel: (() => void) | undefined;

  constructor(options: IdleGcOptions) {
    this.#o = {
      quietMs: 10_000,
      slackBytes: 8 * 2 ** 20,
      minIntervalMs: 60_000,
      checkMs: 10_000,
      ...options,
    };
  }

  /** Work happened now (a reconcile ran). */
  busy(): void {
    this.#lastWork = this.#o.clock.now();
  }

  start(): void {
    if (this.#o.gc === undefined || this.#cancel) return;
    const arm = () => {
      this.#cancel = this.#o.clock.setTimer(this.#o.checkMs, () => {
        this.check();
        arm();
      });
    };
    arm();
  }

  stop(): void {
    this.#cancel?.();
    this.#cancel = undefined;
  }

  /** Compacts when the conditions hold; true when it did. */
  check(): boolean {
    const gc = this.#o.gc;
    if (gc === undefined) return false;
    const now = this.#o.clock.now();
    // A clock that moved back does not hold compaction off until it catches up.
    const within = (since: number, ms: number) => since >= 0 && since < ms;
    if (within(now - this.#lastWork, this.#o.quietMs) || within(now - this.#lastGc, this.#o.minIntervalMs))
      return false;
    const before = this.#o.heap();
    if (before.total - before.used < this.#o.slackBytes) return false;
    this.#lastGc = now;
    gc({ type: "major", execution: "sync", flavor: "last-resort" });
    this.#o.onCompacted?.(before, this.#o.heap());
    return true;
  }
}

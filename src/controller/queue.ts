import type { Clock } from "../clock.ts";
import { DueTimes } from "../core/due.ts";

export interface WorkQueueOptions {
  clock: Clock;
  /** Called for one key at a time; a key is never processed twice concurrently. */
  process: (key: string) => Promise<void>;
  workers: number;
  /**
   * The group a key belongs to (its namespace): groups take turns, and one group holds at
   * most `perGroup` workers, so a flood of keys from one tenant cannot starve another.
   * Default: the part of `namespace/name` before the slash.
   */
  groupOf?: (key: string) => string;
  /** Most workers one group holds at once; default all but one (at least 1). */
  perGroup?: number;
  /**
   * A `process()` still running after this long gives its worker back (the key itself stays
   * in flight until it settles, so it never runs twice at once). 0: no deadline.
   */
  deadlineMs?: number;
  /** Called when a key overran its deadline (for logs and metrics). */
  onOverrun?: (key: string) => void;
  /** Reports depth changes (for metrics). */
  onDepth?: (depth: number) => void;
}

/**
 * A keyed work queue after client-go's workqueue: a key is queued at most once (dirty set),
 * never processed by two workers at once (processing set), and re-queued once more if it
 * was added while being processed. Delayed adds keep only the earliest due time per key, in
 * one heap under one timer (armed for the earliest), so the refresh schedule of thousands of
 * tokens is neither a poll nor thousands of timers.
 *
 * Unlike client-go's, it is fair between tenants: queued keys wait in one FIFO per group
 * (namespace), groups are served in turn, and a group never holds more than `perGroup`
 * workers. A reconcile that overruns its deadline gives its worker back.
 */
export class WorkQueue {
  readonly #opts: WorkQueueOptions;
  readonly #groupOf: (key: string) => string;
  readonly #perGroup: number;
  /** Queued keys per group; Map order is the turn order (a served group moves to the end). */
  readonly #groups = new Map<string, string[]>();
  readonly #activeIn = new Map<string, number>();
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #delayed = new DueTimes();
  /** The one timer of the delayed adds: the time it is armed for, and its cancel. */
  #timer: { at: number; cancel: () => void } | undefined;
  readonly #idleWaiters: (() => void)[] = [];
  #depth = 0;
  #active = 0;
  #stopped = false;
  #paused = false;

  constructor(options: WorkQueueOptions) {
    this.#opts = options;
    this.#groupOf = options.groupOf ?? ((key) => key.slice(0, Math.max(0, key.indexOf("/"))));
    this.#perGroup = Math.max(1, options.perGroup ?? options.workers - 1);
  }

  /** Queue a key now. */
  add(key: string): void {
    if (this.#stopped) return;
    this.#cancelDelayed(key);
    if (this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (!this.#processing.has(key)) {
      this.#enqueue(key);
      this.#pump();
    }
  }

  /** Queue a key at `at` (epoch ms); an earlier pending time for the same key wins. */
  addAt(key: string, at: number): void {
    if (this.#stopped) return;
    const delay = at - this.#opts.clock.now();
    if (delay <= 0) {
      this.add(key);
      return;
    }
    if (this.#delayed.set(key, at)) this.#arm();
  }

  /** Drop a key's pending delayed add (e.g. the object was deleted). */
  forget(key: string): void {
    this.#cancelDelayed(key);
  }

  /** When a key is next due by a delayed add, if any. */
  scheduledAt(key: string): number | undefined {
    return this.#delayed.get(key);
  }

  /** Keep accepting keys but start no work (a replica that is not the leader). */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#pump();
  }

  get paused(): boolean {
    return this.#paused;
  }

  get depth(): number {
    return this.#depth;
  }

  /** Resolves when nothing is queued or in flight (work past its deadline is not waited for). */
  idle(): Promise<void> {
    if ((this.#depth === 0 || this.#paused) && this.#active === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Stop taking work; resolves when in-flight items finish, or after `timeoutMs` whatever
   * is still running (a stuck reconcile must not hold a shutdown). Delayed adds are cancelled.
   */
  async shutdown(timeoutMs = Number.POSITIVE_INFINITY): Promise<void> {
    this.#stopped = true;
    this.#delayed.clear();
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#groups.clear();
    this.#depth = 0;
    this.#dirty.clear();
    if (!Number.isFinite(timeoutMs)) return this.idle();
    let cancel = () => {};
    await Promise.race([
      this.idle(),
      new Promise<void>((resolve) => {
        cancel = this.#opts.clock.setTimer(timeoutMs, resolve);
      }),
    ]);
    cancel();
  }

  #enqueue(key: string): void {
    const group = this.#groupOf(key);
    const keys = this.#groups.get(group);
    if (keys) keys.push(key);
    else this.#groups.set(group, [key]);
    this.#depth++;
    this.#report();
  }

  /** The timer stays armed: firing with nothing due costs one turn, and it re-arms itself. */
  #cancelDelayed(key: string): void {
    this.#delayed.delete(key);
  }

  /** Arms the timer for the earliest delayed add, unless it already is. */
  #arm(): void {
    const next = this.#delayed.next();
    if (next === undefined || this.#stopped) return;
    if (this.#timer !== undefined) {
      if (this.#timer.at <= next) return;
      this.#timer.cancel();
    }
    const cancel = this.#opts.clock.setTimer(next - this.#opts.clock.now(), () => {
      this.#timer = undefined;
      // What the timer was armed for is due even if the wall clock reads a little earlier.
      for (const key of this.#delayed.takeDue(Math.max(next, this.#opts.clock.now()))) this.add(key);
      this.#arm();
    });
    this.#timer = { at: next, cancel };
  }

  /** The next key of the first group in turn that is under its share of workers. */
  #next(): string | undefined {
    for (const [group, keys] of this.#groups) {
      if ((this.#activeIn.get(group) ?? 0) >= this.#perGroup) continue;
      const key = keys.shift() as string;
      this.#groups.delete(group);
      if (keys.length > 0) this.#groups.set(group, keys);
      this.#depth--;
      return key;
    }
    return undefined;
  }

  #pump(): void {
    while (!this.#stopped && !this.#paused && this.#active < this.#opts.workers) {
      const key = this.#next();
      if (key === undefined) break;
      this.#dirty.delete(key);
      this.#processing.add(key);
      this.#take(key, 1);
      this.#report();
      void this.#run(key);
    }
  }

  #take(key: string, n: 1 | -1): void {
    const group = this.#groupOf(key);
    const count = (this.#activeIn.get(group) ?? 0) + n;
    if (count > 0) this.#activeIn.set(group, count);
    else this.#activeIn.delete(group);
    this.#active += n;
  }

  async #run(key: string): Promise<void> {
    let holding = true;
    const release = () => {
      if (!holding) return;
      holding = false;
      this.#take(key, -1);
    };
    const deadline = this.#opts.deadlineMs ?? 0;
    const cancel =
      deadline > 0
        ? this.#opts.clock.setTimer(deadline, () => {
            release();
            this.#opts.onOverrun?.(key);
            this.#settle();
          })
        : () => {};
    try {
      await this.#opts.process(key);
    } catch {
      // process() owns error handling (one onError in the reconciler); nothing escapes here.
    } finally {
      cancel();
      release();
      this.#processing.delete(key);
      if (this.#dirty.has(key) && !this.#stopped) this.#enqueue(key);
      this.#settle();
    }
  }

  #settle(): void {
    this.#report();
    this.#pump();
    if ((this.#depth === 0 || this.#paused) && this.#active === 0) {
      for (const resolve of this.#idleWaiters.splice(0)) resolve();
    }
  }

  #report(): void {
    this.#opts.onDepth?.(this.#depth);
  }
}

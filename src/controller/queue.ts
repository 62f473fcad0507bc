import type { Clock } from "../clock.ts";

export interface WorkQueueOptions {
  clock: Clock;
  /** Called for one key at a time; a key is never processed twice concurrently. */
  process: (key: string) => Promise<void>;
  workers: number;
  /** Reports depth changes (for metrics). */
  onDepth?: (depth: number) => void;
}

/**
 * A keyed work queue after client-go's workqueue: a key is queued at most once (dirty set),
 * never processed by two workers at once (processing set), and re-queued once more if it
 * was added while being processed. Delayed adds keep only the earliest due time per key, so
 * the refresh schedule is one timer per token, not a poll.
 */
export class WorkQueue {
  readonly #opts: WorkQueueOptions;
  readonly #queue: string[] = [];
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #delayed = new Map<string, { at: number; cancel: () => void }>();
  readonly #idleWaiters: (() => void)[] = [];
  #active = 0;
  #stopped = false;
  #paused = false;

  constructor(options: WorkQueueOptions) {
    this.#opts = options;
  }

  /** Queue a key now. */
  add(key: string): void {
    if (this.#stopped) return;
    this.#cancelDelayed(key);
    if (this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (!this.#processing.has(key)) {
      this.#queue.push(key);
      this.#report();
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
    const pending = this.#delayed.get(key);
    if (pending && pending.at <= at) return;
    pending?.cancel();
    const cancel = this.#opts.clock.setTimer(delay, () => {
      this.#delayed.delete(key);
      this.add(key);
    });
    this.#delayed.set(key, { at, cancel });
  }

  /** Drop a key's pending delayed add (e.g. the object was deleted). */
  forget(key: string): void {
    this.#cancelDelayed(key);
  }

  /** When a key is next due by a delayed add, if any. */
  scheduledAt(key: string): number | undefined {
    return this.#delayed.get(key)?.at;
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
    return this.#queue.length;
  }

  get delayedCount(): number {
    return this.#delayed.size;
  }

  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void> {
    if ((this.#queue.length === 0 || this.#paused) && this.#active === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Stop taking work; resolves when in-flight items finish. Delayed adds are cancelled. */
  async shutdown(): Promise<void> {
    this.#stopped = true;
    for (const key of [...this.#delayed.keys()]) this.#cancelDelayed(key);
    this.#queue.length = 0;
    this.#dirty.clear();
    await this.idle();
  }

  #cancelDelayed(key: string): void {
    const pending = this.#delayed.get(key);
    if (pending) {
      pending.cancel();
      this.#delayed.delete(key);
    }
  }

  #pump(): void {
    while (!this.#stopped && !this.#paused && this.#active < this.#opts.workers && this.#queue.length > 0) {
      const key = this.#queue.shift() as string;
      this.#dirty.delete(key);
      this.#processing.add(key);
      this.#active++;
      this.#report();
      void this.#run(key);
    }
  }

  async #run(key: string): Promise<void> {
    try {
      await this.#opts.process(key);
    } catch {
      // process() owns error handling (one onError in the reconciler); nothing escapes here.
    } finally {
      this.#processing.delete(key);
      this.#active--;
      if (this.#dirty.has(key) && !this.#stopped) this.#queue.push(key);
      this.#report();
      this.#pump();
      if (this.#queue.length === 0 && this.#active === 0) {
        for (const resolve of this.#idleWaiters.splice(0)) resolve();
      }
    }
  }

  #report(): void {
    this.#opts.onDepth?.(this.#queue.length);
  }
}

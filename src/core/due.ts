/**
 * Keys and the time each is due, earliest first: a binary min-heap over (time, key) with the
 * current time per key in a Map. A key keeps its earliest pending time. Changing or removing
 * a key leaves its old heap entry behind, skipped when it reaches the top (its time no longer
 * matches the Map's); the heap is rebuilt when such entries outnumber the live ones, so it
 * stays within twice the number of keys.
 *
 * The work queue keeps one timer for the earliest due time instead of one per key: with
 * thousands of tokens that is thousands of Node Timeout objects, closures and timer lists
 * fewer (each distinct delay gets a list of its own).
 */
export class DueTimes {
  readonly #at = new Map<string, number>();
  #heap: Entry[] = [];

  /** Sets `key` due at `at` unless it is already due no later; true when its time changed. */
  set(key: string, at: number): boolean {
    const pending = this.#at.get(key);
    if (pending !== undefined && pending <= at) return false;
    this.#at.set(key, at);
    this.#push({ at, key });
    if (this.#heap.length > 2 * this.#at.size + slack) this.#rebuild();
    return true;
  }

  /** When `key` is due, if it is. */
  get(key: string): number | undefined {
    return this.#at.get(key);
  }

  delete(key: string): void {
    if (!this.#at.delete(key)) return;
    if (this.#at.size === 0) this.#heap = [];
    else if (this.#heap.length > 2 * this.#at.size + slack) this.#rebuild();
  }

  clear(): void {
    this.#at.clear();
    this.#heap = [];
  }

  get size(): number {
    return this.#at.size;
  }

  /** The earliest due time, if any key is due. */
  next(): number | undefined {
    this.#dropStale();
    return this.#heap[0]?.at;
  }

  /** Removes and returns every key due at or before `at`, earliest first. */
  takeDue(at: number): string[] {
    const due: string[] = [];
    for (;;) {
      this.#dropStale();
      const top = this.#heap[0];
      if (top === undefined || top.at > at) return due;
      this.#pop();
      this.#at.delete(top.key);
      due.push(top.key);
    }
  }

  #dropStale(): void {
    for (let top = this.#heap[0]; top !== undefined && this.#at.get(top.key) !== top.at; top = this.#heap[0])
      this.#pop();
  }

  #rebuild(): void {
    this.#heap = [...this.#at].map(([key, at]) => ({ at, key }));
    for (let i = (this.#heap.length >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  #push(entry: Entry): void {
    const heap = this.#heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(entry, heap[parent] as Entry)) break;
      heap[i] = heap[parent] as Entry;
      i = parent;
    }
    heap[i] = entry;
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    heap[0] = last;
    this.#down(0);
  }

  #down(from: number): void {
    const heap = this.#heap;
    const entry = heap[from] as Entry;
    let i = from;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right] as Entry, heap[left] as Entry) ? right : left;
      if (!before(heap[child] as Entry, entry)) break;
      heap[i] = heap[child] as Entry;
      i = child;
    }
    heap[i] = entry;
  }
}

interface Entry {
  at: number;
  key: string;
}

/** Heap entries beyond twice the live keys that are tolerated before a rebuild. */
const slack = 32;

function before(a: Entry, b: Entry): boolean {
  return a.at < b.at;
}

import type { Minted } from "./ports.ts";

/** A minted token as sharers see it: what GitHub answered, and when. */
export interface SharedMint {
  minted: Minted;
  /** Epoch ms the mint completed. */
  issuedAt: number;
}

/**
 * One minted token per scope, handed to every GitHubAppToken asking for that scope
 * (singleflight: concurrent askers wait for the same mint). Keys are chosen by the caller
 * (namespace + scope hash), so a token never crosses a namespace. Entries live until they
 * expire; nothing here revokes (the reconciler revokes only when no Secret holds a token).
 */
export class SharedMints {
  readonly #entries = new Map<string, SharedMint>();
  readonly #inflight = new Map<string, Promise<SharedMint>>();
  #sincePrune = 0;

  /**
   * A token for `key`: the cached or in-flight one when `usable` accepts it, else a new
   * one from `mint` (which then becomes the cached one). `reused` says which.
   */
  async obtain(
    key: string,
    now: () => number,
    usable: (entry: SharedMint) => boolean,
    mint: () => Promise<Minted>,
  ): Promise<SharedMint & { reused: boolean }> {
    this.#prune(now());
    const pending = this.#inflight.get(key);
    if (pending) {
      // A failed shared attempt fails every waiter: each backs off on its own schedule
      // instead of all of them retrying GitHub at once.
      const entry = await pending;
      if (usable(entry)) return { ...entry, reused: true };
    }
    const cached = this.#entries.get(key);
    if (cached && usable(cached)) return { ...cached, reused: true };
    const attempt = mint().then((minted) => {
      const entry = { minted, issuedAt: now() };
      const existing = this.#entries.get(key);
      if (!existing || existing.minted.expiresAt <= minted.expiresAt) this.#entries.set(key, entry);
      return entry;
    });
    this.#inflight.set(key, attempt);
    try {
      return { ...(await attempt), reused: false };
    } finally {
      if (this.#inflight.get(key) === attempt) this.#inflight.delete(key);
    }
  }

  /** Forgets a token (it is being revoked): no one may be handed it again. */
  discard(token: string): void {
    for (const [key, entry] of this.#entries) {
      if (entry.minted.token === token) this.#entries.delete(key);
    }
  }

  /** Forgets every cached token (in-flight mints still complete for their waiters). */
  clear(): void {
    this.#entries.clear();
  }

  /** Number of cached scopes (for tests and metrics). */
  get size(): number {
    return this.#entries.size;
  }

  #prune(now: number): void {
    if (++this.#sincePrune < 256) return;
    this.#sincePrune = 0;
    for (const [key, entry] of this.#entries) {
      if (entry.minted.expiresAt <= now) this.#entries.delete(key);
    }
  }
}

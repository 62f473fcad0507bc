import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import type { Endpoint } from "./apps.ts";

/** Revokes one token at one endpoint (src/github/gateway.ts is the real one). */
export type RevokeFn = (
  endpoint: Endpoint,
  token: string,
  installationId: number | undefined,
) => Promise<void>;

export interface RevokerDeps {
  clock: Clock;
  log: Logger;
  revoke: RevokeFn;
  /** Only the leader calls GitHub (invariant 12); a replica that stepped down drops its timers. */
  canAct: () => boolean;
  /** True when a Secret of another GitHubAppToken still holds the token (sharing). */
  heldElsewhere: (key: string, token: string) => boolean;
  /** A token leaves the shared cache before it is revoked. */
  discard: (token: string) => void;
  /** How long a superseded token stays valid before it is revoked (0: never). */
  afterMs: number;
  onResult?: (result: "success" | "failure") => void;
}

interface Pending {
  endpoint: Endpoint;
  installationId: number | undefined;
  cancel: () => void;
}

/**
 * The one place tokens are revoked after the fact: superseded tokens after a grace period.
 * Timers are owned by the GitHubAppToken key that superseded them, so forgetting a key,
 * resetting after a leadership gap, or stopping cancels them, and a replica that is not the
 * leader never calls GitHub. The endpoint (base URL, CA bundle, proxy) is the one the token
 * was minted through, captured when it was scheduled: a token never goes to another host.
 */
export class Revoker {
  readonly #d: RevokerDeps;
  readonly #pending = new Map<string, Map<string, Pending>>();

  constructor(deps: RevokerDeps) {
    this.#d = deps;
  }

  /** Revokes `token` after the grace period, unless a sharer still holds it then. */
  later(key: string, token: string, endpoint: Endpoint, installationId: number | undefined): void {
    if (this.#d.afterMs <= 0) return;
    const forKey = this.#pending.get(key) ?? new Map<string, Pending>();
    this.#pending.set(key, forKey);
    forKey.get(token)?.cancel();
    const cancel = this.#d.clock.setTimer(this.#d.afterMs, () => {
      forKey.delete(token);
      if (forKey.size === 0 && this.#pending.get(key) === forKey) this.#pending.delete(key);
      void this.#fire(key, token, endpoint, installationId);
    });
    forKey.set(token, { endpoint, installationId, cancel });
  }

  /** Revokes at once (policy withdrawal, deletion); throws what GitHub answered. */
  async now(endpoint: Endpoint, token: string, installationId: number | undefined): Promise<void> {
    this.#d.discard(token);
    try {
      await this.#d.revoke(endpoint, token, installationId);
      this.#d.onResult?.("success");
    } catch (err) {
      this.#d.onResult?.("failure");
      throw err;
    }
  }

  /**
   * The key is gone (its GitHubAppToken was finalized): its superseded tokens are revoked
   * now rather than left waiting, as nothing else will remember them.
   */
  flush(key: string): void {
    const forKey = this.#pending.get(key);
    if (!forKey) return;
    this.#pending.delete(key);
    for (const [token, p] of forKey) {
      p.cancel();
      void this.#fire(key, token, p.endpoint, p.installationId);
    }
  }

  /** Cancels every timer (leadership lost, or the operator stops); tokens expire by themselves. */
  cancelAll(): void {
    for (const forKey of this.#pending.values()) for (const p of forKey.values()) p.cancel();
    this.#pending.clear();
  }

  /** Timers pending, for tests and metrics. */
  get pending(): number {
    let n = 0;
    for (const forKey of this.#pending.values()) n += forKey.size;
    return n;
  }

  async #fire(key: string, token: string, endpoint: Endpoint, installationId: number | undefined) {
    if (!this.#d.canAct()) {
      this.#d.log.debug({ key }, "Left a superseded token to expire: this replica is not the leader");
      return;
    }
    // A sharer still holding it revokes it when it moves on (its own supersede or delete).
    if (this.#d.heldElsewhere(key, token)) return;
    try {
      await this.now(endpoint, token, installationId);
    } catch (err) {
      this.#d.log.warn(
        { err, key },
        "Failed to revoke a superseded token; it expires by itself within the hour",
      );
    }
  }
}

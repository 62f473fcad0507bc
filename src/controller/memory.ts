import type { GitHubAppTokenSpec } from "../api/githubapptoken.ts";
import type { ConditionInput } from "../core/conditions.ts";
import type { Endpoint } from "./apps.ts";

/** Everything the reconciler remembers about one GitHubAppToken between reconciles. */
export interface KeyRecord {
  /** Consecutive failures. */
  failures: number;
  /** Waiting out a failure: until when, and the inputs it failed with. */
  backoff?: { until: number; inputs: string } | undefined;
  /** Failed revocations on delete. */
  revokeAttempts: number;
  /** The status last written and the resourceVersion it was computed from. */
  /**
   * The last status this process wrote to the object with this uid. ghat is the only writer of
   * a token's status, so that write is what the server holds, whatever the cache shows yet.
   */
  statusWritten?: { uid: string | undefined; status: Record<string, unknown> } | undefined;
  /** The Delivered condition from the last delivery check. */
  delivered?: Omit<ConditionInput, "type"> | undefined;
  /**
   * The token this process last wrote. When every Secret holding it is gone (deleted by
   * hand), it is lost to its readers: replaced, never handed out again, revoked later.
   */
  issued?: string | undefined;
  /**
   * The token the Secrets last held, as read or written: when a namespace is deleted as a
   * whole, Kubernetes may delete the Secrets before the finalizer runs.
   */
  held?: string | undefined;
  /**
   * A pass has gathered this key in this process: from now on a Secret the managed cache
   * misses is read from the API server (see gather's assumeAbsent).
   */
  gathered?: boolean | undefined;
  /** Where its tokens were minted: a token is revoked there, never at a default host. */
  endpoint?: Endpoint | undefined;
  /**
   * The spec as last parsed, for the object's uid and generation: the API server changes the
   * generation with every spec change, so status and metadata writes need no new parse.
   */
  spec?: { uid: string; generation: number; parsed: GitHubAppTokenSpec } | undefined;
}

/** One record per key; forgetting or resetting happens here and nowhere else. */
export class Memory {
  readonly #records = new Map<string, KeyRecord>();

  /** The key's record, created empty when there is none. */
  of(key: string): KeyRecord {
    let r = this.#records.get(key);
    if (!r) {
      r = { failures: 0, revokeAttempts: 0 };
      this.#records.set(key, r);
    }
    return r;
  }

  /** The key's record, if there is one (none is created). */
  peek(key: string): KeyRecord | undefined {
    return this.#records.get(key);
  }

  forget(key: string): void {
    this.#records.delete(key);
  }

  /** After a leadership gap another replica may have changed anything: remember nothing. */
  reset(): void {
    this.#records.clear();
  }

  /** Records that satisfy `pred` (tests and benchmarks). */
  count(pred: (r: KeyRecord) => boolean): number {
    let n = 0;
    for (const r of this.#records.values()) if (pred(r)) n++;
    return n;
  }

  get size(): number {
    return this.#records.size;
  }
}

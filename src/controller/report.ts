import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { Clock } from "../clock.ts";
import type { GhatError } from "../core/errors.ts";
import type { MintReason } from "../core/plan.ts";
import { type Grant, sameStatus, statusFor } from "../core/status.ts";
import type { KubeWriter } from "../kube/kube.ts";
import type { Logger } from "../log.ts";
import type { KeyRecord } from "./memory.ts";

/**
 * Writes what core/status.ts decides: the status, only when it changed, and the event of a
 * transition. Events never fail a reconcile.
 */
export class Reporter {
  readonly #kube: Pick<KubeWriter, "applyTokenStatus" | "event">;
  readonly #clock: Clock;
  readonly #log: Logger;

  constructor(kube: Pick<KubeWriter, "applyTokenStatus" | "event">, clock: Clock, log: Logger) {
    this.#kube = kube;
    this.#clock = clock;
    this.#log = log;
  }

  async status(
    token: GitHubAppToken,
    memory: KeyRecord,
    owner: string | undefined,
    current: { expiresAt: number; refreshAt: number } | undefined,
    extra: { grant?: Grant; why?: MintReason; error?: GhatError },
  ): Promise<void> {
    // ghat is the only writer of a token's status: its last write is what the server holds,
    // even when the cache has not caught up with it. Deciding from the cached status instead,
    // a reconcile right after a mint (the Secret's event arrives before the status's) would
    // write a status without what the mint reported. A new leader, or a re-created object,
    // starts from the cache.
    const last = memory.statusWritten;
    const basis: GitHubAppToken =
      last && last.uid === token.metadata.uid
        ? { ...token, status: last.status as GitHubAppToken["status"] }
        : token;
    const { status, event } = statusFor({
      token: basis,
      current,
      ...extra,
      owner,
      delivered: memory.delivered,
      failures: memory.failures,
      now: this.#clock.now(),
    });
    if (sameStatus(status, basis.status ?? {})) return;
    await this.#kube.applyTokenStatus(token.metadata.namespace ?? "", token.metadata.name, status);
    memory.statusWritten = { uid: token.metadata.uid, status };
    if (event) await this.event(token, event.type, event.reason, event.message);
  }

  async event(
    token: { metadata: { name: string; namespace?: string | undefined; uid?: string | undefined } },
    type: "Normal" | "Warning",
    reason: string,
    message: string,
  ): Promise<void> {
    try {
      const { name, namespace = "", uid } = token.metadata;
      await this.#kube.event({ kind: "GitHubAppToken", name, namespace, uid }, type, reason, message);
    } catch (err) {
      this.#log.warn({ err }, "Failed to record event");
    }
  }
}

import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { Clock } from "../clock.ts";
import type { GhatError } from "../core/errors.ts";
import type { MintReason } from "../core/plan.ts";
import { canonicalJson, type Grant, sameStatus, statusFor } from "../core/status.ts";
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
    const { status, event } = statusFor({
      token,
      current,
      ...extra,
      owner,
      delivered: memory.delivered,
      failures: memory.failures,
      now: this.#clock.now(),
    });
    if (sameStatus(status, token.status ?? {})) return;
    // Our own last write, when the cache has not caught up with it yet (the object is still at
    // the version that write was based on): the same status again would be a no-op request.
    const json = canonicalJson(status);
    const last = memory.statusWritten;
    if (last && last.base === token.metadata.resourceVersion && last.json === json) return;
    await this.#kube.applyTokenStatus(token.metadata.namespace ?? "", token.metadata.name, status);
    memory.statusWritten = { base: token.metadata.resourceVersion, json };
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

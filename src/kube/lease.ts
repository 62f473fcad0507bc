import { ApiException, type CoordinationV1Api, type V1Lease, V1MicroTime } from "@kubernetes/client-node";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";

export interface LeaderElectionOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  clock: Clock;
  log: Logger;
  /** How long a lease is valid without renewal (client-go default 15 s). */
  leaseDurationMs: number;
  /** The leader gives up if it cannot renew for this long (client-go default 10 s). */
  renewDeadlineMs: number;
  /** Time between attempts (client-go default 2 s). */
  retryPeriodMs: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection:
 * create or take over with the read resourceVersion (409 means someone else won); a lease is
 * considered expired only after leaseDuration has passed on *our* clock since we last saw its
 * record change (no trust in remote clocks); release on shutdown so a successor need not wait.
 */
export class LeaderElector {
  readonly #o: LeaderElectionOptions;
  #leading = false;
  #stopped = false;
  #cancel: (() => void) | undefined;
  /** The last record we saw and when (local clock) it changed. */
  #observed: { key: string; at: number } | undefined;
  #lastRenew = 0;

  constructor(options: LeaderElectionOptions) {
    this.#o = options;
  }

  get leading(): boolean {
    return this.#leading;
  }

  start(): void {
    this.#stopped = false;
    void this.#tick();
  }

  /** Stop campaigning; if leading, release the lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#cancel?.();
    if (!this.#leading) return;
    this.#leading = false;
    try {
      const lease = await this.#o.api.readNamespacedLease({
        name: this.#o.name,
        namespace: this.#o.namespace,
      });
      if (lease.spec?.holderIdentity === this.#o.identity) {
        delete lease.spec.holderIdentity;
        lease.spec.leaseDurationSeconds = 1;
        lease.spec.renewTime = new V1MicroTime(this.#o.clock.now());
        await this.#o.api.replaceNamespacedLease({
          name: this.#o.name,
          namespace: this.#o.namespace,
          body: lease,
        });
        this.#o.log.info({ lease: this.#o.name }, "Released leader lease");
      }
    } catch (err) {
      this.#o.log.warn({ err }, "Failed to release leader lease");
    }
    this.#o.onStoppedLeading();
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    let ok = false;
    try {
      ok = await this.#tryAcquireOrRenew();
    } catch (err) {
      this.#o.log.debug({ err }, "Leader election attempt failed");
    }
    const now = this.#o.clock.now();
    if (ok) {
      this.#lastRenew = now;
      if (!this.#leading) {
        this.#leading = true;
        this.#o.log.info({ identity: this.#o.identity, lease: this.#o.name }, "Became leader");
        this.#o.onStartedLeading();
      }
    } else if (this.#leading && now - this.#lastRenew > this.#o.renewDeadlineMs) {
      this.#leading = false;
      this.#o.log.warn({ identity: this.#o.identity }, "Lost leader lease");
      this.#o.onStoppedLeading();
    }
    if (!this.#stopped) this.#cancel = this.#o.clock.setTimer(this.#o.retryPeriodMs, () => void this.#tick());
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, identity, clock } = this.#o;
    const now = clock.now();
    const durationS = Math.ceil(this.#o.leaseDurationMs / 1000);
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!(err instanceof ApiException && err.code === 404)) throw err;
      await api.createNamespacedLease({
        namespace,
        body: {
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: durationS,
            acquireTime: new V1MicroTime(now),
            renewTime: new V1MicroTime(now),
            leaseTransitions: 0,
          },
        },
      });
      return true;
    }
    const spec = lease.spec ?? {};
    const recordKey = `${spec.holderIdentity ?? ""}/${String(spec.renewTime?.valueOf() ?? "")}`;
    if (this.#observed?.key !== recordKey) this.#observed = { key: recordKey, at: now };
    const holder = spec.holderIdentity ?? "";
    const heldByOther = holder !== "" && holder !== identity;
    const expired = now > this.#observed.at + (spec.leaseDurationSeconds ?? durationS) * 1000;
    if (heldByOther && !expired) return false;
    const takingOver = holder !== identity;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: durationS,
      renewTime: new V1MicroTime(now),
      ...(takingOver
        ? { acquireTime: new V1MicroTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }
        : {}),
    };
    try {
      await api.replaceNamespacedLease({ name, namespace, body: lease });
    } catch (err) {
      if (err instanceof ApiException && err.code === 409) return false;
      throw err;
    }
    return true;
  }
}

import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";
import { KubeApiError, type KubeRest, pathOf } from "./rest.ts";

/** A coordination.k8s.io/v1 Lease, as far as leader election reads it. */
export interface Lease {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    /** metav1.MicroTime: RFC 3339 with microseconds. */
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** The three calls leader election makes. */
export interface LeaseApi {
  /** The Lease, or undefined when there is none. */
  read(namespace: string, name: string): Promise<Lease | undefined>;
  /** Creates it; the new object, or undefined when another replica created it first (409). */
  create(namespace: string, lease: Lease): Promise<Lease | undefined>;
  /** Replaces it (optimistic: resourceVersion); the new object, or undefined on a conflict (409). */
  replace(namespace: string, name: string, lease: Lease): Promise<Lease | undefined>;
}

/** LeaseApi over the REST client. */
export function leaseApi(rest: KubeRest): LeaseApi {
  const conflict = (err: unknown) => err instanceof KubeApiError && err.code === 409;
  return {
    read: async (namespace, name) => {
      try {
        return await rest.get<Lease>(pathOf("coordination.k8s.io/v1", "leases", namespace, name));
      } catch (err) {
        if (err instanceof KubeApiError && err.code === 404) return undefined;
        throw err;
      }
    },
    create: async (namespace, lease) => {
      try {
        return await rest.post<Lease>(pathOf("coordination.k8s.io/v1", "leases", namespace), lease);
      } catch (err) {
        if (conflict(err)) return undefined;
        throw err;
      }
    },
    replace: async (namespace, name, lease) => {
      try {
        return await rest.put<Lease>(pathOf("coordination.k8s.io/v1", "leases", namespace, name), lease);
      } catch (err) {
        if (conflict(err)) return undefined;
        throw err;
      }
    },
  };
}

/** metav1.MicroTime of a millisecond timestamp. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, "000Z");
}

export interface LeaderElectionOptions {
  api: LeaseApi;
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
 * Like client-go, a leader renews from the Lease it last wrote (one PUT per retry period, no
 * GET) and reads again only when that fails.
 */
export class LeaderElector {
  readonly #o: LeaderElectionOptions;
  #leading = false;
  #stopped = false;
  #cancel: (() => void) | undefined;
  /** The last record we saw and when (local clock) it changed. */
  #observed: { key: string; at: number } | undefined;
  #lastRenew = 0;
  /** The Lease as this replica last wrote it, while leading. */
  #mine: Lease | undefined;

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
      const lease = await this.#o.api.read(this.#o.namespace, this.#o.name);
      if (lease?.spec?.holderIdentity === this.#o.identity) {
        delete lease.spec.holderIdentity;
        lease.spec.leaseDurationSeconds = 1;
        lease.spec.renewTime = microTime(this.#o.clock.now());
        await this.#o.api.replace(this.#o.namespace, this.#o.name, lease);
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
      this.#mine = undefined;
      this.#o.log.warn({ identity: this.#o.identity }, "Lost leader lease");
      this.#o.onStoppedLeading();
    }
    if (!this.#stopped) this.#cancel = this.#o.clock.setTimer(this.#o.retryPeriodMs, () => void this.#tick());
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const { api, namespace, name, identity, clock } = this.#o;
    const now = clock.now();
    const durationS = Math.ceil(this.#o.leaseDurationMs / 1000);
    // Fast path: the leader renews the Lease it last wrote; a conflict means it changed.
    if (this.#leading && this.#mine?.spec) {
      const renewed = await api
        .replace(namespace, name, { ...this.#mine, spec: { ...this.#mine.spec, renewTime: microTime(now) } })
        .catch(() => undefined);
      this.#mine = renewed;
      if (renewed) return true;
    }
    const lease = await api.read(namespace, name);
    if (!lease) {
      this.#mine = await api.create(namespace, {
        metadata: { name, namespace },
        spec: {
          holderIdentity: identity,
          leaseDurationSeconds: durationS,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        },
      });
      return this.#mine !== undefined;
    }
    const spec = lease.spec ?? {};
    const recordKey = `${spec.holderIdentity ?? ""}/${spec.renewTime ?? ""}`;
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
      renewTime: microTime(now),
      ...(takingOver
        ? { acquireTime: microTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 }
        : {}),
    };
    this.#mine = await api.replace(namespace, name, lease);
    return this.#mine !== undefined;
  }
}

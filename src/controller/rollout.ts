import { parseDuration } from "../api/meta.ts";
import type { Clock } from "../clock.ts";
import {
  type DeliveryReport,
  needsRestart,
  restartAnnotation,
  restartedAtAnnotation,
  restartTime,
  secretsReadFromEnv,
  type Workload,
} from "../core/delivery.ts";
import { toGhatError } from "../core/errors.ts";
import { rfc3339 } from "../core/time.ts";
import type { WorkloadApi } from "../kube/workloads.ts";
import type { Logger } from "../log.ts";

export interface RolloutSpec {
  workloads: { kind: Workload["kind"]; name: string }[];
  stagger: string;
  minInterval: string;
}

export interface DeliveryInput {
  key: string;
  namespace: string;
  tokenName: string;
  generation: number | undefined;
  secretNames: string[];
  rollout: RolloutSpec | undefined;
  /** Hash of the token the Secrets now hold. */
  tokenHash: string;
  /** This reconcile replaced a token in the Secrets (a rotation or re-mint). */
  changed: boolean;
}

export interface RolloutOptions {
  api: WorkloadApi;
  clock: Clock;
  log: Logger;
  /** Global pacing: at least this long between two restarts, whatever token asked. */
  minGapMs: number;
  /** Only the leader restarts. */
  canAct: () => boolean;
  /** The report of these GitHubAppTokens changed: reconcile them to update their status. */
  changed: (keys: string[]) => void;
  /** How long a namespace's workload list is reused. */
  listTtlMs?: number;
}

interface Job {
  namespace: string;
  kind: Workload["kind"];
  name: string;
  at: number;
  annotations: Record<string, string>;
  /** GitHubAppToken keys waiting for this restart. */
  owners: Set<string>;
}

/** The report of a token no workload reads through env and that restarts none (shared, frozen). */
const nothing: DeliveryReport = Object.freeze({
  envReaders: Object.freeze([]) as unknown as string[],
  scheduled: Object.freeze([]) as unknown as string[],
  problems: Object.freeze([]) as unknown as string[],
  relevant: false,
});

/**
 * Delivery of new tokens to workloads: finds workloads that read the Secrets through
 * environment variables (they go stale), and restarts the workloads a GitHubAppToken lists,
 * only when its token changed, staggered per token and paced globally. Level-driven: the
 * pod-template annotation restarted-for.ghat.dev/<token> records which token a workload got,
 * so a new leader finishes what the old one left.
 */
export class Rollouts {
  readonly #o: RolloutOptions;
  readonly #checked = new Map<string, { sig: string; report: DeliveryReport }>();
  readonly #lists = new Map<string, { at: number; items: Promise<Workload[]> }>();
  readonly #jobs = new Map<string, Job>();
  #forbiddenUntil = 0;
  #lastRestart = Number.NEGATIVE_INFINITY;
  #cancel: (() => void) | undefined;
  #armedAt = Number.POSITIVE_INFINITY;
  #stopped = false;

  constructor(options: RolloutOptions) {
    this.#o = options;
  }

  /** What to say about delivery for a token; lists workloads only when its token or spec changed. */
  async check(input: DeliveryInput): Promise<DeliveryReport> {
    const sig = `${input.generation ?? ""}|${input.tokenHash}`;
    const seen = this.#checked.get(input.key);
    if (seen && seen.sig === sig && !input.changed) return seen.report;
    const report: DeliveryReport = { envReaders: [], scheduled: [], problems: [], relevant: false };
    const workloads = await this.#list(input.namespace, input.rollout !== undefined);
    if (workloads === undefined) {
      if (input.rollout) {
        report.relevant = true;
        report.problems.push(
          "ghat may not read or restart workloads (install the chart with workloads.enabled=true)",
        );
      }
    } else {
      const listed = new Set((input.rollout?.workloads ?? []).map((w) => `${w.kind}/${w.name}`));
      for (const w of workloads) {
        const id = `${w.kind}/${w.name}`;
        if (listed.has(id)) continue;
        const via = secretsReadFromEnv(w.podSpec, input.secretNames);
        if (via.length > 0) report.envReaders.push(`${id} reads ${via.join(", ")}`);
      }
      report.relevant = report.envReaders.length > 0 || input.rollout !== undefined;
      if (input.rollout) this.#schedule(input, workloads, report);
    }
    // Most tokens have nothing to report: they share one empty report.
    const kept =
      report.relevant || report.problems.length > 0 || report.scheduled.length > 0 ? report : nothing;
    this.#checked.set(input.key, { sig, report: kept });
    return kept;
  }

  /** The token is gone: drop what was remembered for it. */
  forget(key: string): void {
    this.#checked.delete(key);
    for (const [id, job] of this.#jobs) {
      job.owners.delete(key);
      if (job.owners.size === 0) this.#jobs.delete(id);
    }
  }

  stop(): void {
    this.#stopped = true;
    this.#cancel?.();
  }

  #schedule(input: DeliveryInput, workloads: Workload[], report: DeliveryReport): void {
    const rollout = input.rollout;
    if (!rollout) return;
    const staggerMs = parseDuration(rollout.stagger);
    const minIntervalMs = parseDuration(rollout.minInterval);
    const now = this.#o.clock.now();
    let slot = 0;
    for (const ref of rollout.workloads) {
      const id = `${ref.kind}/${ref.name}`;
      const w = workloads.find((x) => x.kind === ref.kind && x.name === ref.name);
      if (!w) {
        report.problems.push(`${id} not found in ${input.namespace}`);
        continue;
      }
      if (!needsRestart(w, input.tokenName, input.tokenHash, input.changed)) continue;
      const at = restartTime(w, now + slot * staggerMs, minIntervalMs);
      slot++;
      const jobId = `${input.namespace}/${id}`;
      const job = this.#jobs.get(jobId) ?? {
        namespace: input.namespace,
        kind: ref.kind,
        name: ref.name,
        at,
        annotations: {},
        owners: new Set<string>(),
      };
      job.at = Math.max(job.at, at);
      job.annotations[restartAnnotation(input.tokenName)] = input.tokenHash;
      job.owners.add(input.key);
      this.#jobs.set(jobId, job);
      report.scheduled.push(id);
    }
    this.#arm();
  }

  async #list(namespace: string, needed: boolean): Promise<Workload[] | undefined> {
    const now = this.#o.clock.now();
    if (now < this.#forbiddenUntil) return undefined;
    let entry = this.#lists.get(namespace);
    if (!entry || now - entry.at >= (this.#o.listTtlMs ?? 30_000)) {
      entry = { at: now, items: this.#o.api.list(namespace) };
      this.#lists.set(namespace, entry);
    }
    // Concurrent checks in one namespace share one list, and each handles its failure here:
    // a 403 is the same answer for all of them, not an error to report.
    try {
      return await entry.items;
    } catch (err) {
      if (this.#lists.get(namespace) === entry) this.#lists.delete(namespace);
      const e = toGhatError(err);
      if (e.status === 403) {
        // Without RBAC for workloads (the default), ask again only every ten minutes.
        this.#forbiddenUntil = Math.max(this.#forbiddenUntil, now + 10 * 60_000);
        this.#o.log.debug("Workloads are not readable; env-var detection and restarts are off");
      } else if (needed) {
        throw e;
      }
      return undefined;
    }
  }

  #arm(): void {
    if (this.#stopped) return;
    let next = Number.POSITIVE_INFINITY;
    for (const job of this.#jobs.values()) next = Math.min(next, job.at);
    if (next === Number.POSITIVE_INFINITY) return;
    next = Math.max(next, this.#lastRestart + this.#o.minGapMs);
    if (this.#cancel && this.#armedAt <= next) return;
    this.#cancel?.();
    this.#armedAt = next;
    this.#cancel = this.#o.clock.setTimer(next - this.#o.clock.now(), () => {
      this.#cancel = undefined;
      this.#armedAt = Number.POSITIVE_INFINITY;
      void this.#runDue();
    });
  }

  async #runDue(): Promise<void> {
    const now = this.#o.clock.now();
    if (!this.#o.canAct()) {
      // Not the leader: the new leader re-derives the restarts from the annotations.
      this.#jobs.clear();
      return;
    }
    const due = [...this.#jobs.entries()]
      .filter(([, j]) => j.at <= now)
      .sort(([, a], [, b]) => a.at - b.at)[0];
    if (due && now >= this.#lastRestart + this.#o.minGapMs) {
      const [id, job] = due;
      this.#jobs.delete(id);
      this.#lastRestart = now;
      const what = `${job.kind}/${job.name}`;
      try {
        await this.#o.api.annotateTemplate(job.namespace, job.kind, job.name, {
          ...job.annotations,
          [restartedAtAnnotation]: rfc3339(now),
        });
        this.#lists.delete(job.namespace);
        this.#o.log.info({ namespace: job.namespace, workload: what }, "Restarted workload for a new token");
        this.#settle(job, what, undefined);
      } catch (err) {
        const e = toGhatError(err);
        this.#o.log.warn({ namespace: job.namespace, workload: what, err: e }, "Failed to restart workload");
        this.#settle(job, what, `${what} could not be restarted: ${e.message}`);
      }
    }
    this.#arm();
  }

  /** Updates the remembered reports of the owners and asks for their status to be rewritten. */
  #settle(job: Job, what: string, problem: string | undefined): void {
    for (const key of job.owners) {
      const seen = this.#checked.get(key);
      if (!seen) continue;
      const report = {
        ...seen.report,
        scheduled: seen.report.scheduled.filter((s) => s !== what),
        problems: problem ? [...seen.report.problems, problem] : seen.report.problems,
      };
      this.#checked.set(key, { sig: seen.sig, report });
    }
    this.#o.changed([...job.owners]);
  }
}

import { appSecretName } from "../api/githubapp.ts";
import type { Clock } from "../clock.ts";
import { type AppStatus, appStatus, nextAppCheck, sameAppStatus } from "../core/appstatus.ts";
import { GhatError } from "../core/errors.ts";
import type { GitHubAppInfo } from "../github/types.ts";
import type { Logger } from "../log.ts";
import type { AppResolution, ResolvedApp } from "./apps.ts";

type AppKind = "GitHubApp" | "ClusterGitHubApp";

interface AppObject {
  metadata?: { name?: string; namespace?: string; generation?: number };
  spec?: unknown;
  status?: AppStatus;
}

export interface AppStatusDeps {
  clock: Clock;
  log: Logger;
  /** The cached App (namespace "" for a ClusterGitHubApp). */
  app(kind: AppKind, namespace: string, name: string): unknown;
  resolve(kind: AppKind, namespace: string, name: string): Promise<AppResolution>;
  getApp(app: ResolvedApp): Promise<GitHubAppInfo>;
  write(kind: AppKind, namespace: string, name: string, status: AppStatus): Promise<void>;
  /** Only the leader checks and writes. */
  canAct(): boolean;
  /** How often GitHub is asked again about a verified App (`--app-check-interval`). */
  intervalMs: number;
  /** GET /app calls per namespace: a tenant with many Apps waits, no one else does. */
  perNamespace?: { perMinute: number; burst: number };
  /** Counts checks by result (Verified or the error code). */
  observe?: (kind: AppKind, result: string) => void;
}

interface Entry {
  kind: AppKind;
  namespace: string;
  name: string;
  due: number;
  failures: number;
  secret: string | undefined;
  generation: number | undefined;
  /** What GitHub last accepted: within the interval, a check with the same key asks no one. */
  verified?: { at: number; key: string; generation: number | undefined; app: GitHubAppInfo };
}

/** Settles a burst of events (an App and its key Secret applied together) into one check. */
const settleMs = 1_000;

/**
 * Reports whether each GitHubApp and ClusterGitHubApp works: its key parses (or its signer
 * signs) and GitHub accepts its JWT. GitHub is asked (`GET /app`) when the App or its key
 * changes and then every `intervalMs`, never more: checks run one at a time, each namespace
 * has a budget of calls, and a status is written only when it changes. After a restart an
 * App whose status already says Verified for this generation is trusted until its interval
 * is up, so a restart costs no GitHub call.
 */
export class AppStatusChecker {
  readonly #d: AppStatusDeps;
  readonly #entries = new Map<string, Entry>();
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  #cancel: (() => void) | undefined;
  #armedFor = Number.POSITIVE_INFINITY;
  #running = false;
  #stopped = false;

  constructor(deps: AppStatusDeps) {
    this.#d = deps;
  }

  /** Informer callback for GitHubApp and ClusterGitHubApp. */
  onApp(kind: AppKind, obj: AppObject, event: "add" | "update" | "delete"): void {
    const namespace = kind === "GitHubApp" ? (obj.metadata?.namespace ?? "") : "";
    const name = obj.metadata?.name ?? "";
    const key = `${kind}/${namespace}/${name}`;
    if (event === "delete") {
      this.#entries.delete(key);
      return;
    }
    const now = this.#d.clock.now();
    const generation = obj.metadata?.generation;
    const existing = this.#entries.get(key);
    if (existing) {
      existing.secret = appSecretName(obj.spec);
      // Our own status writes come back as updates of the same generation: nothing to do.
      if (existing.generation === generation) return;
      existing.generation = generation;
      this.#schedule(existing, now + settleMs);
      return;
    }
    const entry: Entry = {
      kind,
      namespace,
      name,
      due: now,
      failures: 0,
      secret: appSecretName(obj.spec),
      generation,
    };
    const ready = obj.status?.conditions?.find((c) => c.type === "Ready");
    const trusted =
      ready?.status === "True" &&
      ready.reason === "Verified" &&
      obj.status?.observedGeneration === generation &&
      obj.status?.keyFingerprint !== undefined &&
      obj.status?.appId !== undefined;
    this.#entries.set(key, entry);
    if (trusted) {
      entry.verified = {
        at: now,
        key: obj.status?.keyFingerprint ?? "",
        generation,
        app: { id: obj.status?.appId ?? 0, name: "", slug: obj.status?.slug, clientId: undefined },
      };
      this.#schedule(entry, now + this.#d.intervalMs);
    } else this.#schedule(entry, now + settleMs);
  }

  /** A Secret an App reads (key, Vault token, PIN) changed: check the Apps that read it soon. */
  onSecret(namespace: string, name: string): void {
    const now = this.#d.clock.now();
    for (const entry of this.#entries.values()) {
      if (entry.secret !== name) continue;
      if (entry.kind === "GitHubApp" && entry.namespace !== namespace) continue;
      this.#schedule(entry, now + settleMs);
    }
  }

  /** This replica became the leader: check now what it could not while another one led. */
  resume(): void {
    const now = this.#d.clock.now();
    for (const entry of this.#entries.values()) if (!entry.verified) entry.due = Math.min(entry.due, now);
    this.#arm();
  }

  stop(): void {
    this.#stopped = true;
    this.#cancel?.();
    this.#cancel = undefined;
  }

  /** When an App is checked next (epoch ms), or undefined when it is not tracked (for tests). */
  dueAt(kind: AppKind, namespace: string, name: string): number | undefined {
    return this.#entries.get(`${kind}/${kind === "GitHubApp" ? namespace : ""}/${name}`)?.due;
  }

  /** Apps tracked (for tests and metrics). */
  get size(): number {
    return this.#entries.size;
  }

  #schedule(entry: Entry, at: number): void {
    entry.due = at;
    this.#arm();
  }

  #arm(): void {
    if (this.#stopped || this.#running) return;
    let next = Number.POSITIVE_INFINITY;
    for (const e of this.#entries.values()) next = Math.min(next, e.due);
    if (next === this.#armedFor && this.#cancel) return;
    this.#cancel?.();
    this.#cancel = undefined;
    this.#armedFor = next;
    if (next === Number.POSITIVE_INFINITY) return;
    this.#cancel = this.#d.clock.setTimer(Math.max(0, next - this.#d.clock.now()), () => {
      this.#cancel = undefined;
      this.#armedFor = Number.POSITIVE_INFINITY;
      void this.#run();
    });
  }

  /** Checks every due App, one at a time, then re-arms for the next one. */
  async #run(): Promise<void> {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    try {
      for (;;) {
        const now = this.#d.clock.now();
        const due = [...this.#entries.values()].filter((e) => e.due <= now).sort((a, b) => a.due - b.due);
        if (due.length === 0) break;
        for (const entry of due) {
          if (this.#stopped) return;
          if (this.#entries.get(keyOf(entry)) !== entry) continue;
          await this.#check(entry);
        }
      }
    } finally {
      this.#running = false;
      this.#arm();
    }
  }

  async #check(entry: Entry): Promise<void> {
    const { clock, log } = this.#d;
    const now = clock.now();
    if (!this.#d.canAct()) {
      entry.due = now + this.#d.intervalMs;
      return;
    }
    const obj = this.#d.app(entry.kind, entry.namespace, entry.name) as AppObject | undefined;
    if (!obj) {
      this.#entries.delete(keyOf(entry));
      return;
    }
    const generation = obj.metadata?.generation;
    let check: Parameters<typeof appStatus>[1];
    let retryAt: number | undefined;
    let retryable: boolean | undefined;
    try {
      const resolved = await this.#d.resolve(entry.kind, entry.namespace, entry.name);
      if (!resolved.ok) {
        check = { generation, error: { code: resolved.code, message: resolved.message } };
        retryable = new GhatError(resolved.code, "").retryable;
      } else {
        const app = resolved.app;
        const signer = "sign" in app.key ? app.key.kind : "privateKey";
        const v = entry.verified;
        let info: GitHubAppInfo;
        if (v && v.key === app.keyId && v.generation === generation && now - v.at < this.#d.intervalMs) {
          info = v.app;
        } else {
          const wait = this.#take(entry.namespace, now);
          if (wait > 0) {
            entry.due = now + wait;
            return;
          }
          info = await this.#d.getApp(app);
          entry.verified = { at: now, key: app.keyId, generation, app: info };
        }
        check = { generation, fingerprint: app.keyId, signer, app: { id: info.id, slug: info.slug } };
      }
    } catch (err) {
      const e =
        err instanceof GhatError
          ? err
          : new GhatError("InternalError", "checking the App failed unexpectedly");
      if (!(err instanceof GhatError)) log.error({ err, app: keyOf(entry) }, "App check failed unexpectedly");
      check = { generation, error: { code: e.code, message: e.message } };
      retryable = e.retryable || e.code === "InternalError";
      retryAt = e.retryAt;
      if (e.code === "JWTRejected") delete entry.verified;
    }
    entry.failures = check.error ? entry.failures + 1 : 0;
    this.#d.observe?.(entry.kind, check.error?.code ?? "Verified");
    const next = appStatus(obj.status, check, new Date(now).toISOString());
    entry.due = nextAppCheck({
      now,
      intervalMs: this.#d.intervalMs,
      failures: entry.failures,
      retryable,
      retryAt,
    });
    if (sameAppStatus(obj.status, next)) return;
    try {
      await this.#d.write(entry.kind, entry.namespace, entry.name, next);
    } catch (err) {
      log.warn(
        { app: keyOf(entry), err: err instanceof Error ? err.message : String(err) },
        "writing App status failed",
      );
      entry.due = Math.min(entry.due, now + 30_000);
    }
  }

  /** Takes one call from the namespace's budget; returns ms to wait when it is spent. */
  #take(namespace: string, now: number): number {
    const limit = this.#d.perNamespace ?? { perMinute: 10, burst: 20 };
    const ratePerMs = limit.perMinute / 60_000;
    const b = this.#buckets.get(namespace) ?? { tokens: limit.burst, at: now };
    const tokens = Math.min(limit.burst, b.tokens + (now - b.at) * ratePerMs);
    if (tokens < 1) {
      this.#buckets.set(namespace, { tokens, at: now });
      return Math.ceil((1 - tokens) / ratePerMs);
    }
    this.#buckets.set(namespace, { tokens: tokens - 1, at: now });
    if (this.#buckets.size > 10_000) this.#buckets.clear();
    return 0;
  }
}

function keyOf(e: Entry): string {
  return `${e.kind}/${e.namespace}/${e.name}`;
}

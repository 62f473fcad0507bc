import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { Clock } from "../clock.ts";
import type { ErrorCode } from "../core/errors.ts";
import type { Grant } from "../core/status.ts";
import type { KubeWriter } from "../kube/kube.ts";
import type { Logger } from "../log.ts";
import type { AppResolver, Endpoint, ResolvedApp } from "./apps.ts";
import type { Rollouts } from "./rollout.ts";

/** What a mint returns, as the reconciler needs it (the status shows it as a Grant). */
export type Minted = Grant;

/** The GitHub side as the reconciler sees it (src/github/gateway.ts is the real one). */
export interface GitHubGateway {
  mint(app: ResolvedApp, token: GitHubAppToken): Promise<Minted>;
  /** Revokes a token; the installation id, when known, attributes rate-limit headers. */
  revoke(app: ResolvedApp | Endpoint, token: string, installationId?: number): Promise<void>;
}

/** Reads the informer caches. */
export interface TokenSource {
  token(namespace: string, name: string): unknown;
  /** A managed Secret: metadata from the cache, data from a cache or the API server. */
  secret(namespace: string, name: string): Promise<ObservedSecretRaw | undefined>;
  /**
   * Whether the managed-Secret cache (metadata, synced) has this Secret. Without it, every
   * Secret the cache does not have is read from the API server.
   */
  cached?(namespace: string, name: string): boolean;
  /**
   * How many managed Secrets in the namespace, other than those of `exceptToken`, hold the
   * token with this hash: a shared token is revoked only when this is 0.
   */
  holders(namespace: string, tokenHash: string, exceptToken: string): number;
}

/** A Secret as read from the API server (data base64-encoded). */
export interface ObservedSecretRaw {
  type?: string | undefined;
  metadata?: {
    name?: string | undefined;
    labels?: Record<string, string> | undefined;
    annotations?: Record<string, string> | undefined;
    ownerReferences?: { uid: string }[] | undefined;
    resourceVersion?: string | undefined;
  };
  data?: Record<string, string> | undefined;
}

/** The keys one mint is counted under. */
export interface MintKeys {
  token: string;
  app: string;
  installation: string;
}

/** Decides whether a mint may happen now (src/core/limits.ts is the real one). */
export interface MintGate {
  check(keys: MintKeys, now: number): { allowed: true } | { allowed: false; retryAt: number; reason: string };
  record(keys: MintKeys, now: number): void;
  forget(tokenKey: string): void;
}

/** Observability hooks (metrics); every one optional. */
export interface ReconcileHooks {
  minted?(key: string, result: "success" | "shared" | ErrorCode): void;
  expiry?(key: string, expiresAt: number | undefined): void;
  revoked?(result: "success" | "failure"): void;
  /** A mint held back by ghat's own limits, by which one. */
  throttled?(reason: string): void;
  /** A programming error (a bug, not a classified failure). */
  internalError?(): void;
}

/** What the queue should do with a key after its reconcile. */
export interface Outcome {
  /** Run it again at this time (epoch ms). */
  requeueAt?: number;
  /** The object is gone: drop its pending runs. */
  forget?: boolean;
}

export interface ReconcilerOptions {
  /** How long a superseded token stays valid before ghat revokes it (0: never revoke). */
  revokeSupersededAfterMs: number;
  /** Give up revoking on delete after this many failed attempts. */
  maxRevokeAttemptsOnDelete: number;
  /** Retry interval for errors that only GitHub-side changes fix (installation gone, 422). */
  terminalRetryMs: number;
}

export interface ReconcilerDeps {
  clock: Clock;
  log: Logger;
  source: TokenSource;
  apps: Pick<AppResolver, "resolve">;
  kube: KubeWriter;
  github: GitHubGateway;
  random: () => number;
  options: ReconcilerOptions;
  hooks?: ReconcileHooks;
  /** Workload delivery (env-var detection, opt-in restarts); absent: no Delivered condition. */
  delivery?: Pick<Rollouts, "check" | "forget">;
  /** ghat's own mint limits (per token, App and installation); absent: none. */
  limiter?: MintGate;
  /** True while this replica may call GitHub (the leader); default always. */
  canAct?: () => boolean;
}

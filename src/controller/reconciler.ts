import type { KeyObject } from "node:crypto";
import { z } from "zod";
import { type GitHubAppToken, githubAppToken, refreshPolicyProblems } from "../api/githubapptoken.ts";
import { type Condition, parseDuration } from "../api/meta.ts";
import { permissionProblems } from "../api/permissions.ts";
import type { Clock } from "../clock.ts";
import { type ConditionInput, findCondition, setCondition } from "../core/conditions.ts";
import { deliveryCondition } from "../core/delivery.ts";
import { type ErrorCode, GhatError, toGhatError } from "../core/errors.ts";
import { formatWarning, OutputError, webHost } from "../core/outputs.ts";
import {
  currentToken,
  type Decision,
  desiredSecrets,
  type Observed,
  type ObservedSecret,
  plan,
  rfc3339,
  tokenHash,
} from "../core/plan.ts";
import { grantedWithinPolicy } from "../core/policy.ts";
import { refreshTime, retryCap, retryTime, stableJitter } from "../core/schedule.ts";
import { scopeHash, tokenScope } from "../core/scope.ts";
import { keyFingerprint } from "../github/privatekey.ts";
import { finalizer, type KubeWriter } from "../kube/kube.ts";
import type { Logger } from "../log.ts";
import type { AppResolver, Endpoint, ResolvedApp } from "./apps.ts";
import { Revoker } from "./revoke.ts";
import type { Rollouts } from "./rollout.ts";
import { SharedMints } from "./sharing.ts";

/** What a mint returns, as the reconciler needs it. */
export interface Minted {
  token: string;
  /** Epoch ms, from GitHub's expires_at. */
  expiresAt: number;
  installationId: number;
  /** The installation's account login, when known. */
  owner: string | undefined;
  permissions: Record<string, string>;
  repositorySelection: string;
  /** Full names of the repositories granted, when the request named repositories. */
  repositories: string[] | undefined;
}

/** The GitHub side as the reconciler sees it (src/github/gateway.ts is the real one). */
export interface GitHubGateway {
  mint(app: ResolvedApp, token: GitHubAppToken): Promise<Minted>;
  /** Revokes a token; the installation id, when known, attributes rate-limit headers. */
  revoke(app: ResolvedApp | Endpoint, token: string, installationId?: number): Promise<void>;
}

/** Reads the informer caches. */
export interface TokenSource {
  token(namespace: string, name: string): unknown;
  /** A managed Secret from the cache, or, when absent there, from the API server. */
  secret(namespace: string, name: string): Promise<ObservedSecretRaw | undefined>;
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
  apps: AppResolver;
  kube: KubeWriter;
  github: GitHubGateway;
  /** Queue the key again at `at` (epoch ms). */
  requeueAt: (key: string, at: number) => void;
  /** Cancel pending requeues (the object is gone). */
  forget: (key: string) => void;
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
}

/** Most repository names copied into status; the rest are counted in the ScopeMatched message. */
export const maxStatusRepositories = 100;

/**
 * Terminal errors whose fix sends ghat no event: GitHub-side changes, and a foreign Secret
 * going away (ghat does not watch Secrets it does not own). Retried slowly.
 */
const slowRetry: ReadonlySet<ErrorCode> = new Set([
  "SecretConflict",
  "JWTRejected",
  "InstallationNotFound",
  "InstallationSuspended",
  "PermissionsNotGranted",
  "RepositoriesNotGranted",
]);

/**
 * Reconciles one GitHubAppToken key: re-reads the world, asks the pure plan what to do,
 * does it, and writes status. Level-driven: it never asks what event caused it.
 */
export class Reconciler {
  readonly #d: ReconcilerDeps;
  readonly #failures = new Map<string, number>();
  /** Keys waiting out a failure: until when, and the inputs they failed with. */
  readonly #backoff = new Map<string, { until: number; inputs: string }>();
  readonly #revokeAttempts = new Map<string, number>();
  readonly #shared = new SharedMints();
  /** Per key: the status last written and the resourceVersion it was computed from. */
  readonly #statusWritten = new Map<string, { base: string | undefined; json: string }>();
  /** The Delivered condition to write for a key, from the last delivery check. */
  readonly #delivered = new Map<string, Omit<ConditionInput, "type">>();
  /**
   * Per key: the token this process last wrote. When every Secret holding it is gone (deleted
   * by hand), it is lost to its readers: it is replaced by a fresh one, never handed out again
   * from the shared cache, and revoked after the grace period like a superseded token.
   */
  readonly #issued = new Map<string, string>();
  /**
   * Per key: where its tokens were minted (base URL, CA bundle, proxy), so a token is revoked
   * through the same endpoint even when its App can no longer be resolved. Never a default host.
   */
  readonly #endpoints = new Map<string, Endpoint>();
  /**
   * Per key: the token its Secrets last held, as read or written. When a namespace is deleted
   * as a whole, Kubernetes may delete the Secrets before the finalizer runs: the token is
   * still revoked from here.
   */
  readonly #held = new Map<string, string>();
  readonly #revoker: Revoker;

  constructor(deps: ReconcilerDeps) {
    this.#d = deps;
    this.#revoker = new Revoker({
      clock: deps.clock,
      log: deps.log,
      revoke: (endpoint, token, installationId) => deps.github.revoke(endpoint, token, installationId),
      canAct: () => deps.canAct?.() ?? true,
      heldElsewhere: (key, token) => {
        const [namespace = "", name = ""] = key.split("/");
        return this.#heldElsewhere(namespace, name, token);
      },
      discard: (token) => this.#shared.discard(token),
      afterMs: deps.options.revokeSupersededAfterMs,
      onResult: (result) => deps.hooks?.revoked?.(result),
    });
  }

  /** Cancels every pending revocation timer (the operator stops). */
  stop(): void {
    this.#revoker.cancelAll();
  }

  /** Revocations waiting for their grace period, for tests. */
  get pendingRevocations(): number {
    return this.#revoker.pending;
  }

  /**
   * Forgets everything remembered between reconciles (failures, backoffs, shared tokens,
   * tokens issued): after a leadership gap another replica may have changed any of it.
   */
  reset(): void {
    this.#failures.clear();
    this.#backoff.clear();
    this.#revokeAttempts.clear();
    this.#shared.clear();
    this.#statusWritten.clear();
    this.#delivered.clear();
    this.#issued.clear();
    this.#endpoints.clear();
    this.#held.clear();
    this.#revoker.cancelAll();
  }

  async reconcile(key: string): Promise<void> {
    const [namespace = "", name = ""] = key.split("/");
    const raw = this.#d.source.token(namespace, name);
    if (raw === undefined) {
      this.#forget(key);
      return;
    }
    const parsed = githubAppToken.safeParse(raw);
    if (!parsed.success) {
      await this.#invalid(key, raw, parsed.error);
      return;
    }
    const token = parsed.data;
    const log = this.#d.log.child({ namespace, name });
    let observed: Observed | undefined;
    let app: ResolvedApp | undefined;
    let inputs = "";
    let endpoint: Endpoint | undefined;
    try {
      const resolution = await this.#d.apps.resolve(token);
      if (resolution.ok) app = resolution.app;
      endpoint = resolution.ok ? resolution.app.spec : (resolution.endpoint ?? this.#endpoints.get(key));
      if (endpoint) this.#endpoints.set(key, endpointOf(endpoint));
      observed = await this.#observe(token, app, resolution.ok ? undefined : resolution);
      const issued = this.#issued.get(key);
      if (issued) observed.known = [issued];
      const holding = currentToken(observed);
      if (holding) this.#held.set(key, holding.token);
      inputs = inputsOf(token, resolution, observed);
      const waiting = this.#backoff.get(key);
      if (waiting && !observed.deleting && waiting.inputs === inputs && this.#d.clock.now() < waiting.until) {
        // Nothing this reconcile depends on changed since it failed (e.g. the event was our own
        // status write): wait out the backoff instead of retrying at once.
        if (Number.isFinite(waiting.until)) this.#d.requeueAt(key, waiting.until);
        return;
      }
      const decision = plan(observed);
      await this.#act(key, token, observed, app, decision, log, endpoint);
      this.#backoff.delete(key);
    } catch (err) {
      const error = err instanceof OutputError ? new GhatError("InvalidSpec", err.message) : toGhatError(err);
      await this.#onError(key, token, observed, error, log, inputs);
    }
  }

  async #observe(
    token: GitHubAppToken,
    app: ResolvedApp | undefined,
    appProblem: { code: ErrorCode; message: string } | undefined,
  ): Promise<Observed> {
    const ns = token.metadata.namespace ?? "";
    const secrets = new Map<string, ObservedSecret>();
    for (const target of token.spec.secrets) {
      const s = await this.#d.source.secret(ns, target.name);
      if (s) secrets.set(target.name, decodeSecret(s, token.metadata.uid ?? ""));
    }
    const baseUrl = app?.spec.baseUrl ?? "https://api.github.com";
    const policy = token.spec.refreshPolicy;
    const specProblems = [...permissionProblems(token.spec.permissions ?? {})];
    // Admission checks the same bounds; a spec stored before them is checked here again.
    const policyProblems = refreshPolicyProblems(policy);
    specProblems.push(...policyProblems.map((p) => `refreshPolicy: ${p}`));
    let minRemainingMs = 0;
    if (policyProblems.length === 0) minRemainingMs = parseDuration(policy.minRemainingLifetime);
    const inst = token.spec.installation;
    return {
      now: this.#d.clock.now(),
      tokenName: token.metadata.name,
      deleting: token.metadata.deletionTimestamp !== undefined,
      hasFinalizer: token.metadata.finalizers?.includes(finalizer) ?? false,
      specProblems,
      appProblem,
      targets: token.spec.secrets,
      secrets,
      scopeHash: scopeHash(
        tokenScope(token.spec, { namespace: app?.namespace, issuer: app?.issuer ?? "", baseUrl }),
      ),
      minRemainingMs,
      render: {
        host: webHost(baseUrl),
        owner: inst.owner ?? inst.repository?.split("/")[0] ?? token.status?.owner,
        repositories: token.spec.repositories ?? [],
        tokenName: token.metadata.name,
        apiUrl: baseUrl,
      },
    };
  }

  async #act(
    key: string,
    token: GitHubAppToken,
    observed: Observed,
    app: ResolvedApp | undefined,
    decision: Decision,
    log: Logger,
    endpoint?: Endpoint,
  ): Promise<void> {
    const ns = token.metadata.namespace ?? "";
    const name = token.metadata.name;
    switch (decision.action) {
      case "finalize":
        await this.#finalize(key, token, observed, app ? endpointOf(app.spec) : endpoint, log);
        return;
      case "addFinalizer":
        await this.#d.kube.setFinalizer(ns, name, true);
        log.debug("Added finalizer");
        // The finalizer is in place before any token exists; go on in the same pass.
        await this.#act(
          key,
          token,
          { ...observed, hasFinalizer: true },
          app,
          plan({ ...observed, hasFinalizer: true }),
          log,
          endpoint,
        );
        return;
      case "blocked":
        throw new GhatError(decision.code, decision.message);
      case "withdraw": {
        for (const held of decision.revoke) {
          if (this.#heldElsewhere(ns, name, held)) continue;
          this.#shared.discard(held);
          try {
            if (!endpoint) throw new Error("the App's endpoint is unknown");
            await this.#revoker.now(endpoint, held, token.status?.installationId);
          } catch (err) {
            log.warn(
              { err },
              "Failed to revoke a token the policy no longer allows; it expires within the hour",
            );
          }
        }
        for (const name of decision.secrets) await this.#d.kube.deleteSecret(ns, name);
        log.info({ secrets: decision.secrets }, "Withdrew token no longer allowed by policy");
        throw new GhatError(
          "NotPermitted",
          `${decision.message}; its token was revoked and its Secrets removed`,
        );
      }
      case "mint": {
        if (!app) throw new GhatError("AppNotFound", "the App is not available");
        const policy = token.spec.refreshPolicy;
        const refreshAtFor = (issuedAt: number, expiresAt: number) =>
          refreshTime({
            issuedAt,
            expiresAt,
            refreshBeforeMs: parseDuration(policy.refreshBefore),
            minRemainingMs: observed.minRemainingMs,
            jitter: stableJitter(`${key}/${expiresAt}`),
          });
        const mintOwn = () => this.#mintOwn(key, app, token);
        const lost = this.#issued.get(key);
        const superseded =
          lost !== undefined && !decision.superseded.includes(lost)
            ? [...decision.superseded, lost]
            : decision.superseded;
        const obtained =
          token.spec.sharing === "None"
            ? { minted: await mintOwn(), issuedAt: this.#d.clock.now(), reused: false }
            : await this.#shared.obtain(
                `${ns}/${observed.scopeHash}`,
                () => this.#d.clock.now(),
                // Usable when this token would not have to refresh it yet.
                (e) =>
                  refreshAtFor(e.issuedAt, e.minted.expiresAt) > this.#d.clock.now() &&
                  !superseded.includes(e.minted.token),
                mintOwn,
              );
        const minted = obtained.minted;
        this.#checkGrant(key, app, minted, obtained.reused);
        const refreshAt = refreshAtFor(obtained.issuedAt, minted.expiresAt);
        const withOwner: Observed = {
          ...observed,
          render: { ...observed.render, owner: observed.render.owner ?? minted.owner },
        };
        const current = { token: minted.token, expiresAt: minted.expiresAt, refreshAt };
        await this.#writeSecrets(token, withOwner, desiredSecrets(withOwner, current));
        this.#issued.set(key, minted.token);
        this.#held.set(key, minted.token);
        await this.#deliver(
          key,
          token,
          minted.token,
          superseded.some((old) => old !== minted.token),
          log,
        );
        for (const old of superseded) {
          if (old !== minted.token)
            this.#revoker.later(key, old, endpointOf(app.spec), token.status?.installationId);
        }
        this.#d.hooks?.minted?.(key, obtained.reused ? "shared" : "success");
        this.#d.hooks?.expiry?.(key, minted.expiresAt);
        this.#failures.delete(key);
        log.info(
          {
            why: decision.why,
            expiresAt: iso(minted.expiresAt),
            refreshAt: iso(refreshAt),
            installationId: minted.installationId,
            ...(obtained.reused ? { shared: true } : {}),
          },
          obtained.reused ? "Took the token minted for the same scope" : "Minted token",
        );
        await this.#writeStatus(token, observed, current, minted, undefined);
        if (minted.expiresAt - this.#d.clock.now() < observed.minRemainingMs) {
          // Re-minting at once would get the same short token again: a loop that spends the
          // rate limit every tenant of the App shares. Back off instead; the token is kept.
          throw new GhatError(
            "InvalidResponse",
            `GitHub issued a token that expires at ${iso(minted.expiresAt)}, already within refreshPolicy.minRemainingLifetime (${policy.minRemainingLifetime}); lower minRemainingLifetime below the lifetime the server gives`,
          );
        }
        if (decision.why === "NoToken" || decision.why === "ScopeChanged") {
          const was = findCondition(token.status?.conditions, "Ready");
          if (was?.status !== "True" || was.reason !== "Issued") {
            await this.#event(
              token,
              "Normal",
              "Issued",
              `Minted a token valid until ${iso(minted.expiresAt)}`,
            );
          }
        }
        this.#d.requeueAt(key, refreshAt);
        return;
      }
      case "write":
        await this.#writeSecrets(token, observed, decision.secrets);
        log.info({ why: decision.why }, "Restored Secrets");
        await this.#deliver(key, token, decision.current.token, false, log);
        await this.#writeStatus(token, observed, decision.current, undefined, undefined);
        this.#failures.delete(key);
        this.#d.requeueAt(key, decision.current.refreshAt);
        return;
      case "wait":
        await this.#deliver(key, token, decision.current.token, false, log);
        await this.#writeStatus(token, observed, decision.current, undefined, undefined);
        this.#failures.delete(key);
        this.#d.hooks?.expiry?.(key, decision.current.expiresAt);
        this.#d.requeueAt(key, decision.until);
        return;
    }
  }

  /** Runs the delivery check and remembers the Delivered condition for the status write. */
  async #deliver(key: string, token: GitHubAppToken, value: string, changed: boolean, log: Logger) {
    if (!this.#d.delivery) return;
    let condition: Omit<ConditionInput, "type"> | undefined;
    try {
      const report = await this.#d.delivery.check({
        key,
        namespace: token.metadata.namespace ?? "",
        tokenName: token.metadata.name,
        generation: token.metadata.generation,
        secretNames: token.spec.secrets.map((s) => s.name),
        rollout: token.spec.rollout,
        tokenHash: tokenHash(value),
        changed,
      });
      condition = deliveryCondition(report);
    } catch (err) {
      const e = toGhatError(err);
      log.warn({ err: e }, "Failed to inspect workloads");
      condition = {
        status: "False",
        reason: "RestartFailed",
        message: `Could not read workloads: ${e.message}`,
      };
    }
    if (condition) this.#delivered.set(key, condition);
    else this.#delivered.delete(key);
  }

  async #writeSecrets(token: GitHubAppToken, observed: Observed, secrets: ReturnType<typeof desiredSecrets>) {
    const ns = token.metadata.namespace ?? "";
    const owner = {
      kind: "GitHubAppToken" as const,
      name: token.metadata.name,
      uid: token.metadata.uid ?? "",
    };
    for (const secret of secrets) {
      await this.#d.kube.applySecret(ns, secret, owner, observed.secrets.get(secret.name)?.type);
    }
  }

  /** Builds the status from what is known and writes it only when it changed. */
  async #writeStatus(
    token: GitHubAppToken,
    observed: Observed,
    current: { expiresAt: number; refreshAt: number } | undefined,
    minted: Minted | undefined,
    error: GhatError | undefined,
  ): Promise<void> {
    const previous = token.status ?? {};
    const generation = token.metadata.generation;
    const nowIso = iso(this.#d.clock.now());
    let conditions: Condition[] = previous.conditions ?? [];
    const secretNames = token.spec.secrets.map((s) => s.name).join(", ");
    const warnings = token.spec.secrets.map((s) => formatWarning(s.format)).filter((w) => w !== undefined);
    if (error && current) {
      conditions = setCondition(
        conditions,
        {
          type: "Ready",
          status: "True",
          reason: error.code,
          message: `${error.message}. The Secrets still hold a token valid until ${iso(current.expiresAt)}; retrying.`,
        },
        nowIso,
        generation,
      );
    } else if (error) {
      conditions = setCondition(
        conditions,
        { type: "Ready", status: "False", reason: error.code, message: error.message },
        nowIso,
        generation,
      );
    } else if (current) {
      const message = [
        `Secret ${secretNames} holds a token valid until ${iso(current.expiresAt)}; next refresh at ${iso(current.refreshAt)}`,
        ...warnings,
      ].join(". ");
      conditions = setCondition(
        conditions,
        { type: "Ready", status: "True", reason: "Issued", message },
        nowIso,
        generation,
      );
    }
    if (minted) {
      const shortfall = grantShortfall(token, minted);
      conditions = setCondition(
        conditions,
        shortfall.length === 0
          ? {
              type: "ScopeMatched",
              status: "True",
              reason: "Matched",
              message: "GitHub granted what was requested",
            }
          : {
              type: "ScopeMatched",
              status: "False",
              reason: "PartiallyGranted",
              message: `GitHub granted less than requested: ${shortfall.join("; ")}`,
            },
        nowIso,
        generation,
      );
    }
    const delivered = this.#delivered.get(`${token.metadata.namespace}/${token.metadata.name}`);
    if (delivered && current && !error) {
      conditions = setCondition(conditions, { type: "Delivered", ...delivered }, nowIso, generation);
    }
    const failures = error
      ? (this.#failures.get(`${token.metadata.namespace}/${token.metadata.name}`) ?? 0)
      : 0;
    const status: Record<string, unknown> = {
      observedGeneration: generation,
      conditions,
      ...(minted
        ? {
            installationId: minted.installationId,
            permissions: minted.permissions,
            repositorySelection: minted.repositorySelection,
            ...(minted.repositories
              ? { repositories: minted.repositories.slice(0, maxStatusRepositories) }
              : {}),
            ...((observed.render.owner ?? minted.owner)
              ? { owner: observed.render.owner ?? minted.owner }
              : {}),
          }
        : pick(previous, ["installationId", "permissions", "repositorySelection", "repositories", "owner"])),
      ...(current
        ? {
            expiresAt: iso(current.expiresAt),
            refreshAt: iso(current.refreshAt),
            secrets: token.spec.secrets.map((s) => s.name),
          }
        : {}),
      ...(failures > 0 ? { failures } : {}),
    };
    if (sameJson(status, previous)) return;
    // Our own last write, when the cache has not caught up with it yet (the object is still at
    // the version that write was based on): writing the same status again would be a no-op
    // request per rotation.
    const statusKey = `${token.metadata.namespace}/${token.metadata.name}`;
    const json = JSON.stringify(sortKeys(status));
    const last = this.#statusWritten.get(statusKey);
    if (last && last.base === token.metadata.resourceVersion && last.json === json) return;
    await this.#d.kube.applyTokenStatus(token.metadata.namespace ?? "", token.metadata.name, status);
    this.#statusWritten.set(statusKey, { base: token.metadata.resourceVersion, json });
    const before = findCondition(previous.conditions, "Ready");
    const after = findCondition(conditions, "Ready");
    if (error && after && (before?.reason !== after.reason || before.status !== after.status)) {
      await this.#event(token, "Warning", error.code, error.message);
    }
  }

  /** The one place errors are handled: status, event on transition, and when to retry. */
  async #onError(
    key: string,
    token: GitHubAppToken,
    observed: Observed | undefined,
    error: GhatError,
    log: Logger,
    inputs: string,
  ) {
    const failures = (this.#failures.get(key) ?? 0) + 1;
    this.#failures.set(key, failures);
    this.#d.hooks?.minted?.(key, error.code);
    const now = this.#d.clock.now();
    const current = observed ? currentToken(observed) : undefined;
    // While a token is held, retries come faster as it nears its minimum remaining lifetime,
    // so a refresh lands soon after GitHub answers again (docs/reliability.md). A Secret with
    // no usable token (it expired during the outage, or none was ever issued) is past that
    // point: it keeps the floor's pace. Without that cap the failures counted while it was
    // held would put the next retry minutes out.
    // Only outages get that cap: a server that answers nonsense (InvalidResponse) backs off
    // exponentially, up to 5 minutes, whatever refresh policy its tenant chose.
    const maxMs =
      observed && error.code !== "InvalidResponse"
        ? retryCap(current ? current.expiresAt - observed.minRemainingMs - now : 0, observed.minRemainingMs)
        : undefined;
    let retryAt: number | undefined;
    if (error.retryable)
      retryAt = retryTime({ failures, random: this.#d.random(), retryAt: error.retryAt, now, maxMs });
    else if (slowRetry.has(error.code))
      retryAt = Math.max(now + this.#d.options.terminalRetryMs, error.retryAt ?? 0);
    log.warn(
      { code: error.code, status: error.status, failures, retryAt: retryAt && iso(retryAt), err: error },
      "Reconcile failed",
    );
    try {
      if (observed)
        await this.#writeStatus(
          token,
          observed,
          error.code === "SecretConflict" ? undefined : current,
          undefined,
          error,
        );
    } catch (statusErr) {
      log.warn({ err: statusErr }, "Failed to write status");
      retryAt ??= retryTime({ failures, random: this.#d.random(), now, maxMs });
    }
    if (retryAt !== undefined) this.#d.requeueAt(key, retryAt);
    // Without a retry time, only a change of inputs (spec, App, key, Secrets) runs it again.
    this.#backoff.set(key, { until: retryAt ?? Number.POSITIVE_INFINITY, inputs });
  }

  async #invalid(key: string, raw: unknown, error: z.ZodError): Promise<void> {
    const meta =
      (
        raw as {
          metadata?: {
            namespace?: string;
            name?: string;
            generation?: number;
            uid?: string;
            deletionTimestamp?: unknown;
            finalizers?: string[];
          };
        }
      ).metadata ?? {};
    if (meta.deletionTimestamp !== undefined && meta.finalizers?.includes(finalizer)) {
      await this.#finalizeInvalid(key, raw, meta.uid ?? "", meta.finalizers);
      return;
    }
    const message = capMessage(`spec is invalid: ${z.prettifyError(error)}`);
    this.#d.log.warn({ namespace: meta.namespace, name: meta.name }, "Rejected invalid GitHubAppToken");
    const status = (raw as { status?: { conditions?: Condition[] } }).status;
    const conditions = setCondition(
      status?.conditions,
      { type: "Ready", status: "False", reason: "InvalidSpec", message },
      iso(this.#d.clock.now()),
      meta.generation,
    );
    if (sameJson(conditions, status?.conditions)) return;
    await this.#d.kube.applyTokenStatus(meta.namespace ?? "", meta.name ?? "", {
      observedGeneration: meta.generation,
      conditions,
    });
    this.#d.forget(key);
  }

  /**
   * Deletion of a GitHubAppToken whose spec no longer parses (edited before a stricter
   * version of ghat, say): its finalizer must still go. Revokes what this process knows the
   * Secrets hold, through the endpoint it was minted at, deletes the Secrets it owns, and
   * removes the finalizer by a patch of metadata alone.
   */
  async #finalizeInvalid(key: string, raw: unknown, uid: string, finalizers: string[]): Promise<void> {
    const [ns = "", name = ""] = key.split("/");
    const log = this.#d.log.child({ namespace: ns, name });
    const targets = (raw as { spec?: { secrets?: unknown } }).spec?.secrets;
    const names = (Array.isArray(targets) ? targets : [])
      .slice(0, 64)
      .map((t) => (t as { name?: unknown })?.name)
      .filter((n): n is string => typeof n === "string");
    const ours: ObservedSecret[] = [];
    for (const secretName of new Set(names)) {
      const s = await this.#d.source.secret(ns, secretName);
      if (s) {
        const decoded = decodeSecret(s, uid);
        if (decoded.ownedByToken) ours.push(decoded);
      }
    }
    const held = new Set<string>();
    const issued = this.#issued.get(key);
    if (issued) held.add(issued);
    for (const s of ours) for (const v of Object.values(s.data)) if (isTokenShaped(v)) held.add(v);
    const endpoint = this.#endpoints.get(key);
    for (const value of held) {
      if (!endpoint || this.#heldElsewhere(ns, name, value)) continue;
      try {
        await this.#revoker.now(endpoint, value, undefined);
      } catch (err) {
        log.warn(
          { err },
          "Failed to revoke the token of a deleted invalid GitHubAppToken; it expires within the hour",
        );
      }
    }
    for (const s of ours) await this.#d.kube.deleteSecret(ns, s.name);
    await this.#d.kube.setFinalizer(ns, name, false, finalizers);
    log.info({ secrets: ours.map((s) => s.name) }, "Finalized invalid GitHubAppToken");
    this.#forget(key);
  }

  async #finalize(
    key: string,
    token: GitHubAppToken,
    observed: Observed,
    endpoint: Endpoint | undefined,
    log: Logger,
  ) {
    const ns = token.metadata.namespace ?? "";
    const name = token.metadata.name;
    const ours = [...observed.secrets.values()].filter((s) => s.ownedByToken);
    const inSecrets = currentToken({
      ...observed,
      scopeHash: ours[0]?.annotations["ghat.dev/scope-hash"] ?? observed.scopeHash,
    });
    const remembered = this.#held.get(key);
    const held =
      inSecrets ??
      (remembered ? { token: remembered, expiresAt: Number.NaN, refreshAt: Number.NaN } : undefined);
    if (held && this.#heldElsewhere(ns, name, held.token)) {
      log.info("Left the token unrevoked: another GitHubAppToken's Secret still holds it (sharing)");
    } else if (held && !endpoint) {
      // Never a default host: a GitHub Enterprise Server token sent to github.com would leak it.
      await this.#event(
        token,
        "Warning",
        "RevokeFailed",
        `Could not revoke the token: its App and where it was minted are unknown; ${expiresText(held.expiresAt)}`,
      );
    } else if (held && endpoint) {
      const attempts = (this.#revokeAttempts.get(key) ?? 0) + 1;
      try {
        await this.#revoker.now(endpoint, held.token, token.status?.installationId);
        log.info("Revoked token");
      } catch (err) {
        const e = toGhatError(err, "GitHubUnavailable");
        if (attempts < this.#d.options.maxRevokeAttemptsOnDelete && e.retryable) {
          this.#revokeAttempts.set(key, attempts);
          throw e;
        }
        await this.#event(
          token,
          "Warning",
          "RevokeFailed",
          `Gave up revoking the token after ${attempts} attempts (${e.message}); ${expiresText(held.expiresAt)}`,
        );
      }
    }
    for (const s of ours) await this.#d.kube.deleteSecret(ns, s.name);
    await this.#d.kube.setFinalizer(ns, name, false, token.metadata.finalizers);
    log.info({ secrets: ours.map((s) => s.name) }, "Finalized GitHubAppToken");
    this.#forget(key);
  }

  /** A mint of this token's own (not shared), within ghat's mint limits. */
  async #mintOwn(key: string, app: ResolvedApp, token: GitHubAppToken): Promise<Minted> {
    // App and installation budgets are counted per namespace: a tenant that spends its own
    // budget is held back, and no other tenant of the same App is.
    const ns = token.metadata.namespace ?? "";
    const installation = token.status?.installationId ?? JSON.stringify(token.spec.installation);
    const keys: MintKeys = {
      token: key,
      app: `${ns}|${app.cacheKey}`,
      installation: `${ns}|${app.cacheKey}#${installation}`,
    };
    const gate = this.#d.limiter?.check(keys, this.#d.clock.now());
    if (gate && !gate.allowed) {
      this.#d.hooks?.throttled?.(gate.reason);
      throw new GhatError(
        "Throttled",
        `the next mint is held back until ${iso(gate.retryAt)} by ghat's mint limit (${gate.reason})`,
        { retryAt: gate.retryAt },
      );
    }
    // Every attempt counts, failed ones too: a tenant whose server keeps failing must not make
    // ghat call it (or GitHub) faster than the limits allow.
    this.#d.limiter?.record(keys, this.#d.clock.now());
    return await this.#d.github.mint(app, token);
  }

  /**
   * A ClusterGitHubApp's policy, checked against what GitHub resolved and granted rather than
   * what the token named: a repository GitHub redirected to another owner, or an installation
   * id of another account, must not yield a token. Such a token is revoked at once.
   */
  #checkGrant(key: string, app: ResolvedApp, minted: Minted, reused: boolean): void {
    if (!app.policy) return;
    const verdict = grantedWithinPolicy(app.policy, {
      owner: minted.owner,
      installationId: minted.installationId,
      repositories: minted.repositories,
      permissions: minted.permissions,
    });
    if (verdict.allowed) return;
    this.#shared.discard(minted.token);
    const [namespace = "", name = ""] = key.split("/");
    if (!reused || !this.#heldElsewhere(namespace, name, minted.token)) {
      this.#revoker.now(endpointOf(app.spec), minted.token, minted.installationId).catch((err: unknown) => {
        this.#d.log.warn(
          { err, key },
          "Failed to revoke a token outside the policy; it expires within the hour",
        );
      });
    }
    throw new GhatError(
      "NotPermitted",
      `GitHub granted a token outside ClusterGitHubApp "${app.name}"'s policy (${verdict.reason}); it was revoked`,
    );
  }

  /** True when a Secret of another GitHubAppToken in the namespace holds this token. */
  #heldElsewhere(namespace: string, tokenName: string, token: string): boolean {
    return this.#d.source.holders(namespace, tokenHash(token), tokenName) > 0;
  }

  async #event(token: GitHubAppToken, type: "Normal" | "Warning", reason: string, message: string) {
    try {
      await this.#d.kube.event(
        {
          kind: "GitHubAppToken",
          name: token.metadata.name,
          namespace: token.metadata.namespace ?? "",
          uid: token.metadata.uid,
        },
        type,
        reason,
        message,
      );
    } catch (err) {
      this.#d.log.warn({ err }, "Failed to record event");
    }
  }

  #forget(key: string): void {
    this.#failures.delete(key);
    this.#statusWritten.delete(key);
    this.#delivered.delete(key);
    this.#issued.delete(key);
    this.#d.delivery?.forget(key);
    this.#backoff.delete(key);
    this.#revokeAttempts.delete(key);
    this.#endpoints.delete(key);
    this.#held.delete(key);
    this.#revoker.flush(key);
    this.#d.limiter?.forget(key);
    this.#d.forget(key);
    this.#d.hooks?.expiry?.(key, undefined);
  }
}

/** What a reconcile's outcome depends on, as one string: equal inputs, equal outcome. */
function inputsOf(
  token: GitHubAppToken,
  resolution: { ok: true; app: ResolvedApp } | { ok: false; code: string; message: string },
  observed: Observed,
): string {
  const app = resolution.ok
    ? `${resolution.app.cacheKey}|${keyId(resolution.app.key)}`
    : `${resolution.code}|${resolution.message}`;
  const secrets = [...observed.secrets.values()].map((s) => `${s.name}@${s.resourceVersion ?? ""}`).join(",");
  return `${token.metadata.generation ?? ""}|${app}|${secrets}`;
}

const keyIds = new WeakMap<KeyObject, string>();
function keyId(key: KeyObject): string {
  let id = keyIds.get(key);
  if (!id) {
    id = keyFingerprint(key);
    keyIds.set(key, id);
  }
  return id;
}

function decodeSecret(s: ObservedSecretRaw, ownerUid: string): ObservedSecret {
  return {
    resourceVersion: s.metadata?.resourceVersion,
    name: s.metadata?.name ?? "",
    type: s.type ?? "Opaque",
    labels: s.metadata?.labels ?? {},
    annotations: s.metadata?.annotations ?? {},
    data: Object.fromEntries(
      Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]),
    ),
    ownedByToken: ownerUid !== "" && (s.metadata?.ownerReferences ?? []).some((r) => r.uid === ownerUid),
  };
}

/** What GitHub did not grant, in words. */
export function grantShortfall(token: GitHubAppToken, minted: Minted): string[] {
  const out: string[] = [];
  for (const [perm, level] of Object.entries(token.spec.permissions ?? {})) {
    const got = Object.hasOwn(minted.permissions, perm) ? minted.permissions[perm] : undefined;
    if (got === undefined) out.push(`${perm} not granted`);
    else if (got !== level && !(level === "read" && (got === "write" || got === "admin")))
      out.push(`${perm}: ${got} instead of ${level}`);
  }
  if (minted.repositories && token.spec.repositories) {
    const granted = new Set(minted.repositories.map((r) => (r.split("/")[1] ?? r).toLowerCase()));
    const missing = token.spec.repositories.filter((r) => !granted.has(r.toLowerCase()));
    if (missing.length > 0) out.push(`repositories not granted: ${summarize(missing)}`);
  }
  return out;
}

const iso = rfc3339;

/** Most characters of a message written to status or an event from user or remote input. */
const maxMessage = 2048;

function capMessage(message: string): string {
  return message.length <= maxMessage
    ? message
    : `${message.slice(0, maxMessage)}… (${message.length - maxMessage} more characters)`;
}

/** A whole value shaped like a GitHub installation token (GitHub's grammar, any length). */
function isTokenShaped(value: string): boolean {
  return /^ghs_[A-Za-z0-9._-]{36,4096}$/.test(value);
}

/** At most ten names, then a count: a status message stays small whatever was asked. */
function summarize(names: string[]): string {
  return names.length <= 10
    ? names.join(", ")
    : `${names.slice(0, 10).join(", ")} and ${names.length - 10} more`;
}

function expiresText(expiresAt: number): string {
  return Number.isFinite(expiresAt) ? `it expires at ${iso(expiresAt)}` : "it expires within the hour";
}

/** Only what a revocation needs (no key, no policy). */
function endpointOf(e: Endpoint): Endpoint {
  return {
    baseUrl: e.baseUrl,
    ...(e.caBundle ? { caBundle: e.caBundle } : {}),
    ...(e.proxy ? { proxy: e.proxy } : {}),
  };
}

function pick(obj: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => obj[k] !== undefined).map((k) => [k, obj[k]]));
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== undefined)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, x]) => [k, sortKeys(x)]),
    );
  }
  return v;
}

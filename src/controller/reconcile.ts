import { z } from "zod";
import { type GitHubAppToken, githubAppToken } from "../api/githubapptoken.ts";
import { GhatError, SecretExists, toGhatError } from "../core/errors.ts";
import { tooShort } from "../core/issuance.ts";
import { OutputError } from "../core/outputs.ts";
import { type CurrentToken, currentToken, type Observed, plan, tokenHash } from "../core/plan.ts";
import { type SpecFacts, specFacts } from "../core/spec.ts";
import { invalidSpecStatus, sameStatus } from "../core/status.ts";
import { rfc3339 } from "../core/time.ts";
import type { Logger } from "../log.ts";
import { type Endpoint, endpointOf, type ResolvedApp } from "./apps.ts";
import { deliver } from "./deliver.ts";
import { retryAfterFailure, retryAfterReportFailure } from "./errorpolicy.ts";
import { finalize, finalizeInvalid, invalidMeta, withdraw } from "./finalize.ts";
import { gather, inputsOf } from "./gather.ts";
import { Issuer, writeSecrets } from "./issue.ts";
import { type KeyRecord, Memory } from "./memory.ts";
import type { Outcome, ReconcilerDeps } from "./ports.ts";
import { Reporter } from "./report.ts";
import { Revoker } from "./revoke.ts";
import { SharedMints } from "./sharing.ts";

/** One reconcile's view: the object, what was observed, and where its App's GitHub is. */
interface Pass {
  key: string;
  token: GitHubAppToken;
  facts: SpecFacts;
  observed: Observed;
  app: ResolvedApp | undefined;
  endpoint: Endpoint | undefined;
  memory: KeyRecord;
  log: Logger;
  /** The finalizer's write, when this pass adds it: no token reaches a Secret before it succeeds. */
  finalizer?: Promise<void>;
}

/**
 * Reconciles one GitHubAppToken key: parse → gather → plan → act, then reports what the
 * queue should do. Level-driven: it never asks what event caused it. Decisions live in
 * src/core (plan, status, schedule); this file sequences them and does the I/O.
 */
export class Reconciler {
  readonly #d: ReconcilerDeps;
  readonly #memory = new Memory();
  readonly #shared = new SharedMints();
  readonly #revoker: Revoker;
  readonly #issuer: Issuer;
  readonly #reporter: Reporter;

  constructor(deps: ReconcilerDeps) {
    this.#d = deps;
    this.#reporter = new Reporter(deps.kube, deps.clock, deps.log);
    const heldElsewhere = (key: string, token: string) => this.#heldElsewhere(key, token);
    this.#revoker = new Revoker({
      clock: deps.clock,
      log: deps.log,
      revoke: (endpoint, token, installationId) => deps.github.revoke(endpoint, token, installationId),
      canAct: () => deps.canAct?.() ?? true,
      heldElsewhere,
      discard: (token) => this.#shared.discard(token),
      afterMs: deps.options.revokeSupersededAfterMs,
      onResult: (result) => deps.hooks?.revoked?.(result),
    });
    this.#issuer = new Issuer({ ...deps, shared: this.#shared, revoker: this.#revoker, heldElsewhere });
  }

  /**
   * The cache has a GitHubAppToken's new version: once its status is what this process last
   * wrote, that copy is dropped (the cache holds the same), instead of keeping a second status
   * per token until the next reconcile.
   */
  statusSeen(key: string, obj: { metadata?: { uid?: string | undefined }; status?: unknown }): void {
    const written = this.#memory.peek(key)?.statusWritten;
    if (!written || written.uid !== obj.metadata?.uid || obj.status === undefined) return;
    if (sameStatus(written.status, obj.status)) {
      const memory = this.#memory.peek(key);
      if (memory) memory.statusWritten = undefined;
    }
  }

  /** Forgets everything remembered between reconciles: after a leadership gap anything may have changed. */
  reset(): void {
    this.#memory.reset();
    this.#shared.clear();
    this.#revoker.cancelAll();
  }

  /** Cancels every pending revocation timer (the operator stops, or this replica stepped down). */
  stop(): void {
    this.#revoker.cancelAll();
  }

  /** Keys holding a copy of the status last written (not yet seen in the cache), for tests. */
  get statusCopies(): number {
    return this.#memory.count((r) => r.statusWritten !== undefined);
  }

  /** Revocations waiting for their grace period, for tests. */
  get pendingRevocations(): number {
    return this.#revoker.pending;
  }

  async reconcile(key: string): Promise<Outcome> {
    const [namespace = "", name = ""] = key.split("/");
    const raw = this.#d.source.token(namespace, name);
    if (raw === undefined) return this.#forget(key);
    const parsed = parseToken(raw, this.#memory.peek(key));
    if (!parsed.success) return this.#invalid(key, raw, parsed.error);
    const token = parsed.data;
    const memory = this.#memory.of(key);
    const { uid, generation } = token.metadata;
    if (uid !== undefined && generation !== undefined && memory.spec?.parsed !== token.spec)
      memory.spec = { uid, generation, parsed: token.spec };
    const log = this.#d.log.child({ namespace, name });
    const facts = specFacts(token.spec);
    let pass: Pass | undefined;
    let inputs = "";
    try {
      const resolution = await this.#d.apps.resolve(token);
      const app = resolution.ok ? resolution.app : undefined;
      const endpoint = resolution.ok ? resolution.app.spec : (resolution.endpoint ?? memory.endpoint);
      if (endpoint) memory.endpoint = endpointOf(endpoint);
      const problem = resolution.ok ? undefined : resolution;
      const observed = await gather(
        this.#d.source,
        token,
        app,
        problem,
        facts,
        this.#d.clock.now(),
        !memory.gathered,
      );
      memory.gathered = true;
      // An installation named by id gets its owner from the status ghat wrote: until the cache
      // shows that write, the copy kept of it (else the next pass would render the Secrets
      // without the owner and rewrite them).
      const written = memory.statusWritten;
      if (observed.render.owner === undefined && written?.uid === token.metadata.uid) {
        const owner = written?.status.owner;
        if (typeof owner === "string" && owner !== "") observed.render.owner = owner;
      }
      if (memory.issued) observed.known = [memory.issued];
      memory.held = currentToken(observed)?.token ?? memory.held;
      pass = { key, token, facts, observed, app, endpoint: memory.endpoint, memory, log };
      inputs = inputsOf(token, resolution, observed);
      const waiting = memory.backoff;
      if (waiting && !observed.deleting && waiting.inputs === inputs && this.#d.clock.now() < waiting.until) {
        // Nothing this reconcile depends on changed since it failed (e.g. the event was our own
        // status write): wait out the backoff instead of retrying at once.
        return Number.isFinite(waiting.until) ? { requeueAt: waiting.until } : {};
      }
      const outcome = await this.#act(pass);
      memory.backoff = undefined;
      return outcome;
    } catch (err) {
      // A Secret taken to be absent exists: look again, this time reading it.
      if (err instanceof SecretExists && pass?.observed.unverified) return this.reconcile(key);
      const error = err instanceof OutputError ? new GhatError("InvalidSpec", err.message) : toGhatError(err);
      return this.#onError(key, token, pass, error, inputs, log);
    }
  }

  async #act(p: Pass): Promise<Outcome> {
    const { key, token, observed, memory } = p;
    const ns = token.metadata.namespace ?? "";
    const decision = plan(observed);
    switch (decision.action) {
      case "finalize":
        await finalize(this.#finalizeDeps(token), key, token, observed, p.endpoint, memory, p.log);
        return this.#forget(key);
      case "addFinalizer": {
        // The finalizer is in place before any token reaches a Secret, so deleting the
        // GitHubAppToken always revokes it. Its write runs beside the mint (GitHub's round
        // trip), not before it: a new token costs one round trip less. A failed write fails
        // the pass, and a token minted meanwhile is revoked (Issuer).
        const added = this.#d.kube.setFinalizer(ns, token.metadata.name, true);
        added.catch(() => undefined);
        const outcome = await this.#act({
          ...p,
          observed: { ...observed, hasFinalizer: true },
          finalizer: added,
        });
        await added;
        p.log.debug("Added finalizer");
        return outcome;
      }
      case "blocked":
        throw new GhatError(decision.code, decision.message);
      case "withdraw":
        return withdraw(this.#finalizeDeps(token), key, token, decision, p.endpoint, p.log);
      case "mint": {
        if (!p.app) throw new GhatError("AppNotFound", "the App is not available");
        const issued = await this.#issuer.issue(
          key,
          token,
          observed,
          p.app,
          decision,
          p.facts.refreshBeforeMs,
          memory.issued,
          p.finalizer,
        );
        memory.issued = issued.minted.token;
        memory.held = issued.minted.token;
        memory.failures = 0;
        await this.#deliver(p, issued.minted.token, issued.changed);
        await this.#reporter.status(token, memory, observed.render.owner, issued.current, {
          grant: issued.minted,
          why: decision.why,
        });
        const short = tooShort(issued.minted.expiresAt, this.#d.clock.now(), observed.minRemainingMs);
        // Re-minting at once would get the same short token again: a loop that spends the rate
        // limit every tenant of the App shares. Back off instead; the token is kept.
        if (short) throw new GhatError("InvalidResponse", short);
        return { requeueAt: issued.current.refreshAt };
      }
      case "write":
        await p.finalizer;
        await writeSecrets(this.#d.kube, token, observed, decision.secrets);
        p.log.info({ why: decision.why }, "Restored Secrets");
        return this.#settled(p, decision.current, decision.current.refreshAt);
      case "wait":
        this.#d.hooks?.expiry?.(key, decision.current.expiresAt);
        return this.#settled(p, decision.current, decision.until);
    }
  }

  /** The Secrets hold a good token: report it and come back at `until`. */
  async #settled(p: Pass, current: CurrentToken, until: number): Promise<Outcome> {
    await this.#deliver(p, current.token, false);
    await this.#reporter.status(p.token, p.memory, p.observed.render.owner, current, {});
    p.memory.failures = 0;
    return { requeueAt: until };
  }

  /** Runs the delivery check and remembers the Delivered condition for the status. */
  async #deliver(p: Pass, value: string, changed: boolean): Promise<void> {
    if (this.#d.delivery)
      p.memory.delivered = await deliver(this.#d.delivery, p.key, p.token, value, changed, p.log);
  }

  /** The one place failures are handled: status, event on transition, and when to retry. */
  async #onError(
    key: string,
    token: GitHubAppToken,
    p: Pass | undefined,
    error: GhatError,
    inputs: string,
    log: Logger,
  ): Promise<Outcome> {
    const memory = this.#memory.of(key);
    memory.failures++;
    this.#d.hooks?.minted?.(key, error.code);
    const held = p ? currentToken(p.observed) : undefined;
    const { terminalRetryMs } = this.#d.options;
    const now = this.#d.clock.now();
    const minRemainingMs = p?.observed.minRemainingMs;
    const policy = {
      error,
      failures: memory.failures,
      random: this.#d.random(),
      now,
      held,
      minRemainingMs,
      terminalRetryMs,
    };
    let retryAt = retryAfterFailure(policy);
    const fields = { code: error.code, status: error.status, failures: memory.failures, err: error };
    if (error.code === "InternalError") {
      // A bug, not a failure of anything outside: loud in the log, counted, retried slowly.
      this.#d.hooks?.internalError?.();
      log.error({ ...fields, cause: error.cause }, "Reconcile failed on a bug in ghat");
    } else {
      log.warn({ ...fields, retryAt: retryAt && rfc3339(retryAt) }, "Reconcile failed");
    }
    try {
      const shown = error.code === "SecretConflict" ? undefined : held;
      if (p) await this.#reporter.status(token, memory, p.observed.render.owner, shown, { error });
    } catch (statusErr) {
      log.warn({ err: statusErr }, "Failed to write status");
      retryAt ??= retryAfterReportFailure(policy);
    }
    // Without a retry time, only a change of inputs (spec, App, key, Secrets) runs it again.
    memory.backoff = { until: retryAt ?? Number.POSITIVE_INFINITY, inputs };
    return retryAt === undefined ? {} : { requeueAt: retryAt };
  }

  /** A spec that does not parse: says so in Ready, or, being deleted, still lets go of it. */
  async #invalid(key: string, raw: unknown, error: z.ZodError): Promise<Outcome> {
    const meta = invalidMeta(raw);
    const log = this.#d.log.child({ namespace: meta.namespace, name: meta.name });
    if (meta.deleting) {
      const deps = this.#finalizeDeps({ metadata: meta });
      await finalizeInvalid(deps, key, raw, meta, this.#memory.of(key), log);
      return this.#forget(key);
    }
    log.warn("Rejected invalid GitHubAppToken");
    const status = invalidSpecStatus(
      meta.conditions,
      z.prettifyError(error),
      meta.generation,
      this.#d.clock.now(),
    );
    if (status) await this.#d.kube.applyTokenStatus(meta.namespace, meta.name, status);
    return { forget: true };
  }

  #finalizeDeps(token: {
    metadata: { name: string; namespace?: string | undefined; uid?: string | undefined };
  }) {
    return {
      kube: this.#d.kube,
      source: this.#d.source,
      revoker: this.#revoker,
      heldElsewhere: (key: string, value: string) => this.#heldElsewhere(key, value),
      warn: (reason: string, message: string) => this.#reporter.event(token, "Warning", reason, message),
      maxRevokeAttempts: this.#d.options.maxRevokeAttemptsOnDelete,
    };
  }

  /** True when a Secret of another GitHubAppToken in the namespace holds this token. */
  #heldElsewhere(key: string, token: string): boolean {
    const [namespace = "", name = ""] = key.split("/");
    return this.#d.source.holders(namespace, tokenHash(token), name) > 0;
  }

  /** The object is gone: its superseded tokens are revoked now, and nothing of it is kept. */
  #forget(key: string): Outcome {
    this.#memory.forget(key);
    this.#revoker.flush(key);
    this.#d.limiter?.forget(key);
    this.#d.delivery?.forget(key);
    this.#d.hooks?.expiry?.(key, undefined);
    return { forget: true };
  }
}

/** A GitHubAppToken without its spec: what must be parsed again when only the spec is known. */
const tokenShell = githubAppToken.omit({ spec: true });

/**
 * Parses a GitHubAppToken, taking the spec from the last parse when the object's uid and
 * generation are the same (the spec is the largest part of the schema, and most events of a
 * token are ghat's own status and finalizer writes). Any failure is the full parse's, with
 * paths from the object's root.
 */
export function parseToken(
  raw: unknown,
  record: KeyRecord | undefined,
): z.ZodSafeParseResult<GitHubAppToken> {
  const known = record?.spec;
  const meta = (raw as { metadata?: { uid?: unknown; generation?: unknown } } | null)?.metadata;
  if (known && meta && known.uid === meta.uid && known.generation === meta.generation) {
    const rest = tokenShell.safeParse(raw);
    if (rest.success) return { success: true, data: { ...rest.data, spec: known.parsed } };
  }
  return githubAppToken.safeParse(raw);
}

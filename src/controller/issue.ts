import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { Clock } from "../clock.ts";
import { GhatError, SecretExists } from "../core/errors.ts";
import { mintKeys, reusable, supersededBy } from "../core/issuance.ts";
import type { DesiredSecret } from "../core/outputs.ts";
import {
  type CurrentToken,
  desiredSecrets,
  type Observed,
  type Decision as PlanDecision,
} from "../core/plan.ts";
import { grantedWithinPolicy } from "../core/policy.ts";
import { refreshTime, stableJitter } from "../core/schedule.ts";
import { rfc3339 } from "../core/time.ts";
import type { KubeWriter } from "../kube/kube.ts";
import type { Logger } from "../log.ts";
import { endpointOf, type ResolvedApp } from "./apps.ts";
import type { GitHubGateway, Minted, MintGate, ReconcileHooks } from "./ports.ts";
import type { Revoker } from "./revoke.ts";
import type { SharedMints } from "./sharing.ts";

export interface IssuerDeps {
  clock: Clock;
  log: Logger;
  kube: Pick<KubeWriter, "applySecret">;
  github: GitHubGateway;
  shared: SharedMints;
  revoker: Revoker;
  limiter?: MintGate | undefined;
  hooks?: ReconcileHooks | undefined;
  /** True when a Secret of another GitHubAppToken holds the token (sharing). */
  heldElsewhere: (key: string, token: string) => boolean;
}

export interface Issued {
  minted: Minted;
  current: Pick<CurrentToken, "token" | "expiresAt" | "refreshAt">;
  /** Taken from a sharer's mint rather than minted for this token. */
  reused: boolean;
  /** The token changed for its readers (something was superseded). */
  changed: boolean;
}

/**
 * Issues a token to one GitHubAppToken: its own mint or the one minted for the same scope in
 * its namespace, within ghat's mint limits; checked against a ClusterGitHubApp's policy by
 * what GitHub granted; written into every Secret; the tokens it supersedes revoked later.
 */
export class Issuer {
  readonly #d: IssuerDeps;

  constructor(deps: IssuerDeps) {
    this.#d = deps;
  }

  async issue(
    key: string,
    token: GitHubAppToken,
    observed: Observed,
    app: ResolvedApp,
    decision: Extract<PlanDecision, { action: "mint" }>,
    refreshBeforeMs: number,
    lost: string | undefined,
    /** Written beside the mint: awaited before any Secret is (see Reconciler, addFinalizer). */
    finalizer?: Promise<void>,
  ): Promise<Issued> {
    const ns = token.metadata.namespace ?? "";
    const now = () => this.#d.clock.now();
    const refreshAtFor = (issuedAt: number, expiresAt: number) =>
      refreshTime({
        issuedAt,
        expiresAt,
        refreshBeforeMs,
        minRemainingMs: observed.minRemainingMs,
        jitter: stableJitter(`${key}/${expiresAt}`),
      });
    const superseded = supersededBy(decision.superseded, lost);
    const mintOwn = () => this.#mintOwn(key, app, token);
    const obtained =
      token.spec.sharing === "None"
        ? { minted: await mintOwn(), issuedAt: now(), reused: false }
        : await this.#d.shared.obtain(
            `${ns}/${observed.scopeHash}`,
            now,
            (e) => reusable(refreshAtFor(e.issuedAt, e.minted.expiresAt), now(), e.minted.token, superseded),
            mintOwn,
          );
    const minted = obtained.minted;
    this.#checkGrant(key, app, minted, obtained.reused);
    const current = {
      token: minted.token,
      expiresAt: minted.expiresAt,
      refreshAt: refreshAtFor(obtained.issuedAt, minted.expiresAt),
    };
    const withOwner: Observed = {
      ...observed,
      render: { ...observed.render, owner: observed.render.owner ?? minted.owner },
    };
    try {
      await finalizer;
    } catch (err) {
      // Without the finalizer, deleting the GitHubAppToken would not revoke the token.
      this.#withdrawMinted(key, app, minted, obtained.reused, "minted beside a failed finalizer write");
      throw err;
    }
    try {
      await writeSecrets(this.#d.kube, token, observed, desiredSecrets(withOwner, current));
    } catch (err) {
      // A Secret taken to be absent exists (a foreign one): this token reaches no reader.
      if (err instanceof SecretExists) this.#withdrawMinted(key, app, minted, obtained.reused, "unwritten");
      throw err;
    }
    const endpoint = endpointOf(app.spec);
    for (const old of superseded) {
      if (old !== minted.token) this.#d.revoker.later(key, old, endpoint, token.status?.installationId);
    }
    this.#d.hooks?.minted?.(key, obtained.reused ? "shared" : "success");
    this.#d.hooks?.expiry?.(key, minted.expiresAt);
    this.#d.log.info(
      {
        namespace: ns,
        name: token.metadata.name,
        why: decision.why,
        expiresAt: rfc3339(minted.expiresAt),
        refreshAt: rfc3339(current.refreshAt),
        installationId: minted.installationId,
        ...(obtained.reused ? { shared: true } : {}),
      },
      obtained.reused ? "Took the token minted for the same scope" : "Minted token",
    );
    const changed = superseded.some((old) => old !== minted.token);
    return { minted, current, reused: obtained.reused, changed };
  }

  /** A mint of this token's own (not shared), within ghat's mint limits. */
  async #mintOwn(key: string, app: ResolvedApp, token: GitHubAppToken): Promise<Minted> {
    const installation = token.status?.installationId ?? JSON.stringify(token.spec.installation);
    const keys = mintKeys(key, token.metadata.namespace ?? "", app.cacheKey, installation);
    const gate = this.#d.limiter?.check(keys, this.#d.clock.now());
    if (gate && !gate.allowed) {
      this.#d.hooks?.throttled?.(gate.reason);
      throw new GhatError(
        "Throttled",
        `the next mint is held back until ${rfc3339(gate.retryAt)} by ghat's mint limit (${gate.reason})`,
        // The interval ends at a known time, and only this token waits for it: retry then. A
        // shared bucket keeps the backoff, so the tokens that wait on it do not all retry at once.
        { retryAt: gate.retryAt, exact: gate.reason === "token-interval" },
      );
    }
    // Every attempt counts, failed ones too: a tenant whose server keeps failing must not make
    // ghat call it (or GitHub) faster than the limits allow.
    this.#d.limiter?.record(keys, this.#d.clock.now());
    return await this.#d.github.mint(app, token);
  }

  /**
   * A token that must not be used: out of the shared pool, and revoked at once unless a
   * Secret of another GitHubAppToken holds it (it was taken from a sharer's mint).
   */
  #withdrawMinted(key: string, app: ResolvedApp, minted: Minted, reused: boolean, why: string): void {
    this.#d.shared.discard(minted.token);
    if (reused && this.#d.heldElsewhere(key, minted.token)) return;
    this.#d.revoker.now(endpointOf(app.spec), minted.token, minted.installationId).catch((err: unknown) => {
      this.#d.log.warn({ err, key }, `Failed to revoke a token ${why}; it expires within the hour`);
    });
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
    this.#withdrawMinted(key, app, minted, reused, "outside the policy");
    throw new GhatError(
      "NotPermitted",
      `GitHub granted a token outside ClusterGitHubApp "${app.name}"'s policy (${verdict.reason}); it was revoked`,
    );
  }
}

/** Applies every desired Secret, owned by the GitHubAppToken. */
export async function writeSecrets(
  kube: Pick<KubeWriter, "applySecret">,
  token: GitHubAppToken,
  observed: Pick<Observed, "secrets" | "unverified">,
  secrets: DesiredSecret[],
): Promise<void> {
  const ns = token.metadata.namespace ?? "";
  const owner = { kind: "GitHubAppToken" as const, name: token.metadata.name, uid: token.metadata.uid ?? "" };
  for (const secret of secrets) {
    await kube.applySecret(
      ns,
      secret,
      owner,
      observed.secrets.get(secret.name)?.type,
      observed.unverified?.has(secret.name) ?? false,
    );
  }
}

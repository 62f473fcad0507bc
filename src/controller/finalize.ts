import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { Condition } from "../api/meta.ts";
import { GhatError, toGhatError } from "../core/errors.ts";
import { currentToken, type Observed, type ObservedSecret } from "../core/plan.ts";
import { rfc3339 } from "../core/time.ts";
import { finalizer, type KubeWriter } from "../kube/kube.ts";
import type { Logger } from "../log.ts";
import type { Endpoint } from "./apps.ts";
import { decodeSecret } from "./gather.ts";
import type { KeyRecord } from "./memory.ts";
import type { TokenSource } from "./ports.ts";
import type { Revoker } from "./revoke.ts";

export interface FinalizeDeps {
  kube: Pick<KubeWriter, "deleteSecret" | "setFinalizer">;
  source: Pick<TokenSource, "secret">;
  revoker: Revoker;
  /** True when a Secret of another GitHubAppToken holds the token (sharing). */
  heldElsewhere: (key: string, token: string) => boolean;
  /** Records a Warning event on the GitHubAppToken. */
  warn: (reason: string, message: string) => Promise<void>;
  /** Give up revoking on delete after this many failed attempts. */
  maxRevokeAttempts: number;
}

/**
 * Deletion of a GitHubAppToken: revokes the token its Secrets hold (or, when Kubernetes
 * deleted them first, the one this process last saw there) through the endpoint it was
 * minted at, never a default host; deletes the Secrets; removes the finalizer. A failed
 * revocation is retried a bounded number of times, so an outage cannot block deletion.
 */
export async function finalize(
  d: FinalizeDeps,
  key: string,
  token: GitHubAppToken,
  observed: Observed,
  endpoint: Endpoint | undefined,
  memory: KeyRecord,
  log: Logger,
): Promise<void> {
  const ns = token.metadata.namespace ?? "";
  const ours = [...observed.secrets.values()].filter((s) => s.ownedByToken);
  const inSecrets = currentToken({
    ...observed,
    scopeHash: ours[0]?.annotations["ghat.dev/scope-hash"] ?? observed.scopeHash,
  });
  const held = inSecrets ?? (memory.held ? { token: memory.held, expiresAt: Number.NaN } : undefined);
  if (held && d.heldElsewhere(key, held.token)) {
    log.info("Left the token unrevoked: another GitHubAppToken's Secret still holds it (sharing)");
  } else if (held && !endpoint) {
    // Never a default host: a GitHub Enterprise Server token sent to github.com would leak it.
    await d.warn(
      "RevokeFailed",
      `Could not revoke the token: its App and where it was minted are unknown; ${expires(held.expiresAt)}`,
    );
  } else if (held && endpoint) {
    memory.revokeAttempts++;
    try {
      await d.revoker.now(endpoint, held.token, token.status?.installationId);
      log.info("Revoked token");
    } catch (err) {
      const e = toGhatError(err, "GitHubUnavailable");
      if (memory.revokeAttempts < d.maxRevokeAttempts && e.retryable) throw e;
      await d.warn(
        "RevokeFailed",
        `Gave up revoking the token after ${memory.revokeAttempts} attempts (${e.message}); ${expires(held.expiresAt)}`,
      );
    }
  }
  for (const s of ours) await d.kube.deleteSecret(ns, s.name);
  await d.kube.setFinalizer(ns, token.metadata.name, false, token.metadata.finalizers);
  log.info({ secrets: ours.map((s) => s.name) }, "Finalized GitHubAppToken");
}

/**
 * Deletion of a GitHubAppToken whose spec no longer parses (edited before a stricter version
 * of ghat, say): its finalizer must still go. Revokes what this process knows the Secrets
 * hold, through the endpoint it was minted at, deletes the Secrets it owns, and removes the
 * finalizer by a patch of metadata alone.
 */
export async function finalizeInvalid(
  d: FinalizeDeps,
  key: string,
  raw: unknown,
  meta: Pick<InvalidMeta, "uid" | "finalizers">,
  memory: KeyRecord,
  log: Logger,
): Promise<void> {
  const [ns = "", name = ""] = key.split("/");
  const targets = (raw as { spec?: { secrets?: unknown } }).spec?.secrets;
  const names = (Array.isArray(targets) ? targets : [])
    .slice(0, 64)
    .map((t) => (t as { name?: unknown })?.name)
    .filter((n): n is string => typeof n === "string");
  const ours: ObservedSecret[] = [];
  for (const secretName of new Set(names)) {
    const s = await d.source.secret(ns, secretName);
    if (s) {
      const decoded = decodeSecret(s, meta.uid);
      if (decoded.ownedByToken) ours.push(decoded);
    }
  }
  const held = new Set<string>();
  if (memory.issued) held.add(memory.issued);
  if (memory.held) held.add(memory.held);
  for (const s of ours) for (const v of Object.values(s.data)) if (isTokenShaped(v)) held.add(v);
  for (const value of held) {
    if (!memory.endpoint || d.heldElsewhere(key, value)) continue;
    try {
      await d.revoker.now(memory.endpoint, value, undefined);
    } catch (err) {
      log.warn(
        { err },
        "Failed to revoke the token of a deleted invalid GitHubAppToken; it expires within the hour",
      );
    }
  }
  for (const s of ours) await d.kube.deleteSecret(ns, s.name);
  await d.kube.setFinalizer(ns, name, false, meta.finalizers);
  log.info({ secrets: ours.map((s) => s.name) }, "Finalized invalid GitHubAppToken");
}

/** What is read of a GitHubAppToken whose spec does not parse (its metadata is still typed). */
export interface InvalidMeta {
  namespace: string;
  name: string;
  uid: string;
  generation: number | undefined;
  finalizers: string[];
  /** Being deleted with ghat's finalizer still on it. */
  deleting: boolean;
  conditions: Condition[] | undefined;
}

export function invalidMeta(raw: unknown): InvalidMeta {
  type Raw = {
    metadata?: Partial<{
      namespace: string;
      name: string;
      uid: string;
      generation: number;
      finalizers: string[];
    }> & {
      deletionTimestamp?: unknown;
    };
    status?: { conditions?: Condition[] };
  };
  const m = (raw as Raw).metadata ?? {};
  const finalizers = Array.isArray(m.finalizers) ? m.finalizers : [];
  return {
    namespace: m.namespace ?? "",
    name: m.name ?? "",
    uid: m.uid ?? "",
    generation: m.generation,
    finalizers,
    deleting: m.deletionTimestamp !== undefined && finalizers.includes(finalizer),
    conditions: (raw as Raw).status?.conditions,
  };
}

/** A whole value shaped like a GitHub installation token (GitHub's grammar, any length). */
function isTokenShaped(value: string): boolean {
  return /^ghs_[A-Za-z0-9._-]{36,4096}$/.test(value);
}

function expires(expiresAt: number): string {
  return Number.isFinite(expiresAt) ? `it expires at ${rfc3339(expiresAt)}` : "it expires within the hour";
}

/**
 * A ClusterGitHubApp's policy no longer allows the token: revoke it at once (unless a sharer
 * holds it) and delete its Secrets. Always ends in NotPermitted.
 */
export async function withdraw(
  d: Pick<FinalizeDeps, "kube" | "revoker" | "heldElsewhere">,
  key: string,
  token: GitHubAppToken,
  decision: { message: string; revoke: string[]; secrets: string[] },
  endpoint: Endpoint | undefined,
  log: Logger,
): Promise<never> {
  for (const held of decision.revoke) {
    if (d.heldElsewhere(key, held)) continue;
    try {
      if (!endpoint) throw new Error("the App's endpoint is unknown");
      await d.revoker.now(endpoint, held, token.status?.installationId);
    } catch (err) {
      log.warn({ err }, "Failed to revoke a token the policy no longer allows; it expires within the hour");
    }
  }
  const ns = token.metadata.namespace ?? "";
  for (const name of decision.secrets) await d.kube.deleteSecret(ns, name);
  log.info({ secrets: decision.secrets }, "Withdrew token no longer allowed by policy");
  throw new GhatError("NotPermitted", `${decision.message}; its token was revoked and its Secrets removed`);
}

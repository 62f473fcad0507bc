import { createHash } from "node:crypto";
import type { SecretTarget } from "../api/githubapptoken.ts";
import type { ErrorCode } from "./errors.ts";
import {
  annotations,
  type DesiredSecret,
  desiredSecret,
  extractToken,
  labels,
  type OutputContext,
} from "./outputs.ts";
import { rfc3339 } from "./time.ts";

/** A Secret as the kube layer observed it (data already decoded to text). */
export interface ObservedSecret {
  name: string;
  type: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  data: Record<string, string>;
  /** True when its ownerReferences name this GitHubAppToken's uid. */
  ownedByToken: boolean;
  resourceVersion?: string | undefined;
}

/** Everything a decision needs, gathered by the reconciler. No I/O happens in this file. */
export interface Observed {
  now: number;
  tokenName: string;
  /**
   * Tokens this process wrote for this GitHubAppToken (in memory only). A template output
   * need not contain the raw token; when none can be read back from the Secrets, one of
   * these whose hash the Secret names is the token it holds.
   */
  known?: readonly string[];
  deleting: boolean;
  hasFinalizer: boolean;
  /** Why the spec cannot be acted on, beyond what admission already rejects. */
  specProblems: readonly string[];
  /** Why the referenced App cannot be used (missing App, policy, key), or undefined. */
  appProblem: { code: ErrorCode; message: string } | undefined;
  targets: readonly SecretTarget[];
  /** Observed Secrets by name; absent names do not exist. */
  secrets: ReadonlyMap<string, ObservedSecret>;
  /**
   * Names taken to be absent without a read (the managed-Secret cache does not have them and
   * this process has not written them): written create-only, so a Secret that exists after
   * all is never overwritten (src/controller/gather.ts).
   */
  unverified?: ReadonlySet<string>;
  scopeHash: string;
  minRemainingMs: number;
  /** Context for rendering outputs, minus the token and its times. */
  render: Omit<OutputContext, "token" | "expiresAt" | "refreshAt" | "scopeHash">;
}

/** The token currently held in the Secrets, read back from them. */
export interface CurrentToken {
  token: string;
  expiresAt: number;
  refreshAt: number;
  /** The Secret it was read from. */
  source: string;
}

export type Decision =
  | { action: "finalize" }
  | { action: "addFinalizer" }
  | { action: "blocked"; code: ErrorCode; message: string }
  | { action: "withdraw"; message: string; revoke: string[]; secrets: string[] }
  | { action: "mint"; why: MintReason; current: CurrentToken | undefined; superseded: string[] }
  | { action: "write"; why: string; current: CurrentToken; secrets: DesiredSecret[] }
  | { action: "wait"; until: number; current: CurrentToken };

export type MintReason = "NoToken" | "ScopeChanged" | "BelowMinimumLifetime" | "RefreshDue";

type Check = (o: Observed, current: CurrentToken | undefined) => Decision | undefined;

/**
 * The ordered checks that decide what to do with one GitHubAppToken (after cert-manager's
 * certificates/policies/checks.go). The first check that returns a decision wins.
 */
export const checks: readonly [string, Check][] = [
  ["BeingDeleted", (o) => (o.deleting ? { action: "finalize" } : undefined)],
  ["FinalizerMissing", (o) => (o.hasFinalizer ? undefined : { action: "addFinalizer" })],
  [
    "SpecInvalid",
    (o) =>
      o.specProblems.length > 0
        ? { action: "blocked", code: "InvalidSpec", message: o.specProblems.join("; ") }
        : undefined,
  ],
  [
    "PolicyWithdrawn",
    (o) => {
      // A ClusterGitHubApp's policy no longer allows this token: revoke what it holds and
      // remove its Secrets, rather than leave a token the platform team withdrew in use.
      if (o.appProblem?.code !== "NotPermitted") return undefined;
      const secrets = o.targets.filter((t) => {
        const s = o.secrets.get(t.name);
        return s !== undefined && isOurs(s, o.tokenName);
      });
      if (secrets.length === 0) return undefined;
      return {
        action: "withdraw",
        message: o.appProblem.message,
        revoke: heldTokens(o),
        secrets: secrets.map((t) => t.name),
      };
    },
  ],
  ["AppUnusable", (o) => (o.appProblem ? { action: "blocked", ...o.appProblem } : undefined)],
  [
    "SecretOwnedByOther",
    (o) => {
      const foreign = o.targets.filter((t) => {
        const s = o.secrets.get(t.name);
        return s !== undefined && !isOurs(s, o.tokenName);
      });
      if (foreign.length === 0) return undefined;
      return {
        action: "blocked",
        code: "SecretConflict",
        message: `Secret ${foreign.map((t) => `"${t.name}"`).join(", ")} exists and is not managed by this GitHubAppToken; ghat never overwrites it. Delete it or choose another name.`,
      };
    },
  ],
  [
    "NoCurrentToken",
    (o, current) => {
      if (current) return undefined;
      const stale = o.targets.some((t) => {
        const s = o.secrets.get(t.name);
        return s && isOurs(s, o.tokenName) && s.annotations[annotations.scopeHash] !== o.scopeHash;
      });
      return { action: "mint", why: stale ? "ScopeChanged" : "NoToken", current, superseded: heldTokens(o) };
    },
  ],
  [
    "TokenBelowMinimumLifetime",
    (o, current) =>
      current && current.expiresAt - o.now <= o.minRemainingMs
        ? { action: "mint", why: "BelowMinimumLifetime", current, superseded: heldTokens(o) }
        : undefined,
  ],
  [
    "RefreshDue",
    (o, current) =>
      current && o.now >= current.refreshAt
        ? { action: "mint", why: "RefreshDue", current, superseded: heldTokens(o) }
        : undefined,
  ],
  [
    "SecretsDrifted",
    (o, current) => {
      if (!current) return undefined;
      const desired = desiredSecrets(o, current);
      const drifted = desired.filter((d) => !matches(o.secrets.get(d.name), d));
      if (drifted.length === 0) return undefined;
      return {
        action: "write",
        why: `${drifted.map((d) => d.name).join(", ")} ${drifted.length === 1 ? "is" : "are"} missing or changed`,
        current,
        secrets: drifted,
      };
    },
  ],
];

/** Decides what to do. Pure: same input, same decision. */
export function plan(o: Observed): Decision {
  const current = currentToken(o);
  for (const [, check] of checks) {
    const decision = check(o, current);
    if (decision) return decision;
  }
  // biome-ignore lint/style/noNonNullAssertion: NoCurrentToken returned a decision otherwise.
  return { action: "wait", until: current!.refreshAt, current: current! };
}

/**
 * The freshest token among our Secrets whose scope matches the spec and whose content is
 * what ghat wrote (the token hash annotation guards against hand edits).
 */
export function currentToken(o: Observed): CurrentToken | undefined {
  let best: CurrentToken | undefined;
  for (const target of o.targets) {
    const s = o.secrets.get(target.name);
    if (!s || !isOurs(s, o.tokenName)) continue;
    if (s.annotations[annotations.scopeHash] !== o.scopeHash) continue;
    const expiresAt = Date.parse(s.annotations[annotations.expiresAt] ?? "");
    const refreshAt = Date.parse(s.annotations[annotations.refreshAt] ?? "");
    if (!Number.isFinite(expiresAt) || !Number.isFinite(refreshAt) || expiresAt <= o.now) continue;
    const format = (s.annotations[annotations.format] ?? target.format) as SecretTarget["format"];
    const token = tokenIn(o, s, format, target.key);
    if (!token) continue;
    if (!best || expiresAt > best.expiresAt) best = { token, expiresAt, refreshAt, source: s.name };
  }
  return best;
}

/**
 * Every token ghat wrote into this GitHubAppToken's Secrets and that is still unexpired,
 * whatever its scope: what a new mint supersedes and ghat should revoke.
 */
export function heldTokens(o: Observed): string[] {
  const out = new Set<string>();
  for (const target of o.targets) {
    const s = o.secrets.get(target.name);
    if (!s || !isOurs(s, o.tokenName)) continue;
    if (!(Date.parse(s.annotations[annotations.expiresAt] ?? "") > o.now)) continue;
    const format = (s.annotations[annotations.format] ?? target.format) as SecretTarget["format"];
    const token = tokenIn(o, s, format, target.key);
    if (token) out.add(token);
  }
  return [...out];
}

/** The token a Secret holds, checked against its token-hash annotation. */
function tokenIn(
  o: Observed,
  s: ObservedSecret,
  format: SecretTarget["format"],
  key: string | undefined,
): string | undefined {
  const hash = s.annotations[annotations.tokenHash];
  const read = extractToken(format, key, s.data);
  if (read && tokenHash(read) === hash) return read;
  return o.known?.find((t) => tokenHash(t) === hash);
}

/** The Secrets every target should hold for `current`. */
export function desiredSecrets(
  o: Observed,
  current: Pick<CurrentToken, "token" | "expiresAt" | "refreshAt">,
): DesiredSecret[] {
  const ctx: OutputContext = {
    ...o.render,
    token: current.token,
    expiresAt: rfc3339(current.expiresAt),
    refreshAt: rfc3339(current.refreshAt),
    scopeHash: o.scopeHash,
  };
  return o.targets.map((t) => {
    const d = desiredSecret(t, ctx);
    d.annotations[annotations.tokenHash] = tokenHash(current.token);
    return d;
  });
}

/** A short SHA-256 of the token: lets ghat detect hand edits without storing the token twice. */
export function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("hex").slice(0, 16);
}

function isOurs(s: ObservedSecret, tokenName: string): boolean {
  return s.ownedByToken && s.labels[labels.token] === tokenName;
}

/** True when the observed Secret already has everything desired (extra fields are tolerated). */
export function matches(observed: ObservedSecret | undefined, desired: DesiredSecret): boolean {
  if (!observed || observed.type !== desired.type) return false;
  const sub = (a: Record<string, string>, b: Record<string, string>) =>
    Object.entries(a).every(([k, v]) => b[k] === v);
  return (
    sub(desired.labels, observed.labels) &&
    sub(desired.annotations, observed.annotations) &&
    sub(desired.data, observed.data) &&
    Object.keys(observed.data).every((k) => k in desired.data)
  );
}

import type { Condition } from "../api/meta.ts";
import { setCondition } from "./conditions.ts";
import type { ErrorCode } from "./errors.ts";

/**
 * A GitHubApp's (or ClusterGitHubApp's) status, decided from what a check found. Pure: the
 * checker (src/controller/appstatus.ts) gathers, this decides, the checker writes only when
 * the result differs from what the object already shows.
 */
export interface AppCheck {
  generation: number | undefined;
  /** The key's or signer's identity (src/github/privatekey.ts keyFingerprint, or a signer id). */
  fingerprint?: string | undefined;
  signer?: string | undefined;
  /** GitHub's answer to GET /app, when the check reached it. */
  app?: { id: number; slug?: string | undefined } | undefined;
  error?: { code: ErrorCode; message: string } | undefined;
}

export interface AppStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  appId?: number;
  slug?: string;
  signer?: string;
  keyFingerprint?: string;
}

export function appStatus(previous: AppStatus | undefined, check: AppCheck, nowIso: string): AppStatus {
  const condition = check.error
    ? { type: "Ready", status: "False" as const, reason: check.error.code, message: check.error.message }
    : {
        type: "Ready",
        status: "True" as const,
        reason: "Verified" as const,
        message: `GitHub accepts the App's JWT (App ${check.app?.id ?? "?"}${check.app?.slug ? `, ${check.app.slug}` : ""})`,
      };
  const next: AppStatus = {
    ...(check.generation === undefined ? {} : { observedGeneration: check.generation }),
    conditions: setCondition(previous?.conditions, condition, nowIso, check.generation),
  };
  // What GitHub said last stays until GitHub says otherwise (a key problem does not erase it).
  const appId = check.app?.id ?? previous?.appId;
  const slug = check.app ? check.app.slug : previous?.slug;
  if (appId !== undefined) next.appId = appId;
  if (slug) next.slug = slug;
  const signer = check.signer ?? previous?.signer;
  if (signer) next.signer = signer;
  const fingerprint = check.fingerprint ?? (check.error ? previous?.keyFingerprint : undefined);
  if (fingerprint) next.keyFingerprint = fingerprint;
  return next;
}

/** True when the stored status already says what `next` says (no write needed). */
export function sameAppStatus(a: AppStatus | undefined, b: AppStatus): boolean {
  return JSON.stringify(normalise(a ?? {})) === JSON.stringify(normalise(b));
}

function normalise(s: AppStatus): unknown {
  return {
    observedGeneration: s.observedGeneration,
    appId: s.appId,
    slug: s.slug,
    signer: s.signer,
    keyFingerprint: s.keyFingerprint,
    conditions: (s.conditions ?? []).map((c) => [
      c.type,
      c.status,
      c.reason,
      c.message,
      c.observedGeneration,
    ]),
  };
}

/**
 * When to check an App next. A verified App is checked again after `intervalMs`; a failure
 * that may clear by itself (GitHub or a signer down, rate limits) is retried sooner with
 * exponential backoff from 15 s, never sooner than GitHub's retry time; one that needs a
 * change (a bad key, a JWT GitHub refuses) waits for the change, or for the interval.
 */
export function nextAppCheck(input: {
  now: number;
  intervalMs: number;
  failures: number;
  retryable: boolean | undefined;
  retryAt?: number | undefined;
}): number {
  if (input.retryable !== true) return input.now + input.intervalMs;
  const backoff = Math.min(input.intervalMs, 15_000 * 2 ** Math.min(input.failures - 1, 10));
  return Math.max(input.now + backoff, input.retryAt ?? 0);
}

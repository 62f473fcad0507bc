import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { Condition } from "../api/meta.ts";
import { type ConditionInput, findCondition, setCondition } from "./conditions.ts";
import type { ErrorCode } from "./errors.ts";
import { formatWarning } from "./outputs.ts";
import type { MintReason } from "./plan.ts";
import { rfc3339 } from "./time.ts";

/** What GitHub answered for a mint, as the status shows it. */
export interface Grant {
  token: string;
  expiresAt: number;
  installationId: number;
  owner: string | undefined;
  permissions: Record<string, string>;
  repositorySelection: string;
  repositories: string[] | undefined;
}

export interface StatusInput {
  token: Pick<GitHubAppToken, "metadata" | "spec" | "status">;
  /** The token the Secrets hold after this reconcile, if any. */
  current: { expiresAt: number; refreshAt: number } | undefined;
  /** A grant made in this reconcile (own mint or shared). */
  grant?: Grant | undefined;
  /** Why it was minted, when it was. */
  why?: MintReason | undefined;
  /** The owner the spec or an earlier lookup names. */
  owner: string | undefined;
  error?: { code: ErrorCode; message: string } | undefined;
  /** The Delivered condition from the last delivery check. */
  delivered?: Omit<ConditionInput, "type"> | undefined;
  /** Consecutive failures (shown while failing). */
  failures: number;
  now: number;
}

export interface StatusEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/** Most repository names copied into status; the rest are counted in the ScopeMatched message. */
export const maxStatusRepositories = 100;
/** Most characters of a message written to status or an event from user or remote input. */
export const maxMessage = 2048;

/**
 * The status a GitHubAppToken should have, and the event its change raises: Ready from the
 * error or the token held, ScopeMatched from a grant, Delivered from the delivery check.
 * Events only on transitions: a Warning when Ready's reason or status changes to an error,
 * a Normal "Issued" when a first (or re-scoped) token was minted. Pure.
 */
export function statusFor(input: StatusInput): { status: Record<string, unknown>; event?: StatusEvent } {
  const { token, current, grant, error } = input;
  const previous = token.status ?? {};
  const generation = token.metadata.generation;
  const nowIso = rfc3339(input.now);
  let conditions: Condition[] = previous.conditions ?? [];
  const set = (c: ConditionInput) => {
    conditions = setCondition(conditions, c, nowIso, generation);
  };
  if (error && current) {
    set({
      type: "Ready",
      status: "True",
      reason: error.code,
      message: capMessage(
        `${error.message}. The Secrets still hold a token valid until ${rfc3339(current.expiresAt)}; retrying.`,
      ),
    });
  } else if (error) {
    set({ type: "Ready", status: "False", reason: error.code, message: capMessage(error.message) });
  } else if (current) {
    const names = token.spec.secrets.map((s) => s.name).join(", ");
    const warnings = token.spec.secrets.map((s) => formatWarning(s.format)).filter((w) => w !== undefined);
    const held = `Secret ${names} holds a token valid until ${rfc3339(current.expiresAt)}; next refresh at ${rfc3339(current.refreshAt)}`;
    set({ type: "Ready", status: "True", reason: "Issued", message: [held, ...warnings].join(". ") });
  }
  if (grant) {
    const shortfall = grantShortfall(token.spec, grant);
    set(
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
    );
  }
  if (input.delivered && current && !error) set({ type: "Delivered", ...input.delivered });
  const owner = input.owner ?? grant?.owner;
  const status: Record<string, unknown> = {
    observedGeneration: generation,
    conditions,
    ...(grant
      ? {
          installationId: grant.installationId,
          permissions: grant.permissions,
          repositorySelection: grant.repositorySelection,
          ...(grant.repositories ? { repositories: grant.repositories.slice(0, maxStatusRepositories) } : {}),
          ...(owner ? { owner } : {}),
        }
      : pick(previous, ["installationId", "permissions", "repositorySelection", "repositories", "owner"])),
    ...(current
      ? {
          expiresAt: rfc3339(current.expiresAt),
          refreshAt: rfc3339(current.refreshAt),
          secrets: token.spec.secrets.map((s) => s.name),
        }
      : {}),
    ...(error && input.failures > 0 ? { failures: input.failures } : {}),
  };
  return { status, ...eventFor(input, previous.conditions, conditions) };
}

function eventFor(
  input: StatusInput,
  before: Condition[] | undefined,
  after: Condition[],
): { event?: StatusEvent } {
  const was = findCondition(before, "Ready");
  const now = findCondition(after, "Ready");
  if (input.error) {
    const changed = now && (was?.reason !== now.reason || was.status !== now.status);
    return changed
      ? { event: { type: "Warning", reason: input.error.code, message: input.error.message } }
      : {};
  }
  // Normal events only where an operator wants one: a token that works again after a failure
  // (the Warning said what broke). A first mint, a refresh or a re-scoped mint shows in
  // status alone: an event per new token would be a fourth API write per token (docs/events.md).
  if (input.grant && was?.status === "False" && was.reason !== "Deleting") {
    return {
      event: {
        type: "Normal",
        reason: "Issued",
        message: `Minted a token valid until ${rfc3339(input.grant.expiresAt)} (was ${was.reason})`,
      },
    };
  }
  return {};
}

/** What GitHub did not grant, in words (at most ten repository names, then a count). */
export function grantShortfall(
  spec: Pick<GitHubAppToken["spec"], "permissions" | "repositories">,
  grant: Grant,
): string[] {
  const out: string[] = [];
  for (const [perm, level] of Object.entries(spec.permissions ?? {})) {
    const got = Object.hasOwn(grant.permissions, perm) ? grant.permissions[perm] : undefined;
    if (got === undefined) out.push(`${perm} not granted`);
    else if (got !== level && !(level === "read" && (got === "write" || got === "admin")))
      out.push(`${perm}: ${got} instead of ${level}`);
  }
  if (grant.repositories && spec.repositories) {
    const granted = new Set(grant.repositories.map((r) => (r.split("/")[1] ?? r).toLowerCase()));
    const missing = spec.repositories.filter((r) => !granted.has(r.toLowerCase()));
    if (missing.length > 0) out.push(`repositories not granted: ${summarize(missing)}`);
  }
  return out;
}

/** True when two statuses are the same JSON, whatever the key order. */
export function sameStatus(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/** JSON with sorted keys and undefined fields left out. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(sortKeys(v));
}

export function capMessage(message: string): string {
  return message.length <= maxMessage
    ? message
    : `${message.slice(0, maxMessage)}… (${message.length - maxMessage} more characters)`;
}

function summarize(names: string[]): string {
  return names.length <= 10
    ? names.join(", ")
    : `${names.slice(0, 10).join(", ")} and ${names.length - 10} more`;
}

function pick(obj: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => obj[k] !== undefined).map((k) => [k, obj[k]]));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, x]) => [k, sortKeys(x)]),
    );
  }
  return v;
}

/**
 * Ready=False/InvalidSpec for an object whose spec does not parse, or undefined when its
 * conditions already say so (nothing to write).
 */
export function invalidSpecStatus(
  conditions: Condition[] | undefined,
  problem: string,
  generation: number | undefined,
  now: number,
): { observedGeneration: number | undefined; conditions: Condition[] } | undefined {
  const next = setCondition(
    conditions,
    {
      type: "Ready",
      status: "False",
      reason: "InvalidSpec",
      message: capMessage(`spec is invalid: ${problem}`),
    },
    rfc3339(now),
    generation,
  );
  return sameStatus(next, conditions) ? undefined : { observedGeneration: generation, conditions: next };
}

import type { Condition } from "../api/meta.ts";
import { type ErrorCode, errorCodes } from "./errors.ts";

/** The closed list of reasons on ghat's conditions: the error codes plus these. */
export const reasons = [
  ...errorCodes,
  /** Ready=True: the Secrets hold a live token of the requested scope. */
  "Issued",
  /** A GitHubApp's Ready=True: the key or signer works and GitHub accepts the App's JWT. */
  "Verified",
  /** Ready=Unknown: nothing has been minted yet. */
  "Pending",
  /** Ready=False: the resource is being deleted; the token is being revoked. */
  "Deleting",
  /** ScopeMatched=True. */
  "Matched",
  /** ScopeMatched=False: GitHub granted less than was asked. */
  "PartiallyGranted",
  /** Delivered=True: consumers get new tokens (files via the kubelet, listed workloads restarted). */
  "Delivered",
  /** Delivered=True: restarts of listed workloads are scheduled or in progress. */
  "RestartScheduled",
  /** Delivered=False: a workload reads a Secret through environment variables and goes stale. */
  "EnvironmentVariables",
  /** Delivered=False: a listed workload could not be restarted (missing, forbidden, API error). */
  "RestartFailed",
] as const;
export type Reason = (typeof reasons)[number];

export interface ConditionInput {
  type: string;
  status: Condition["status"];
  reason: Reason | ErrorCode;
  message: string;
}

/**
 * Returns conditions with `input` set, keeping lastTransitionTime when the status did not
 * change (Kubernetes api-conventions). The list order is stable; nothing else changes.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  input: ConditionInput,
  nowIso: string,
  observedGeneration: number | undefined,
): Condition[] {
  const list = [...(conditions ?? [])];
  const index = list.findIndex((c) => c.type === input.type);
  const previous = index >= 0 ? list[index] : undefined;
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message,
    lastTransitionTime: previous && previous.status === input.status ? previous.lastTransitionTime : nowIso,
    ...(observedGeneration === undefined ? {} : { observedGeneration }),
  };
  if (index >= 0) list[index] = next;
  else list.push(next);
  return list;
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

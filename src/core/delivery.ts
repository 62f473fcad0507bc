import { createHash } from "node:crypto";
import type { ConditionInput } from "./conditions.ts";

/** How long the kubelet takes to put a changed Secret into a mounted volume (see docs/consumers.md). */
export const kubeletDelayText =
  "pods mounting them as files see new tokens within the kubelet's sync period plus its cache TTL (about 1-2 minutes by default; never with subPath)";

/** What ghat reads from an apps/v1 workload: its kind, name and pod template. */
export interface Workload {
  kind: "Deployment" | "StatefulSet" | "DaemonSet";
  name: string;
  /** spec.template.metadata.annotations. */
  templateAnnotations: Record<string, string>;
  /** spec.template.spec, as stored. */
  podSpec: PodSpecLike | undefined;
}

interface EnvLike {
  name?: string;
  valueFrom?: { secretKeyRef?: { name?: string } };
}
interface ContainerLike {
  name?: string;
  env?: EnvLike[];
  envFrom?: { secretRef?: { name?: string } }[];
}
export interface PodSpecLike {
  containers?: ContainerLike[];
  initContainers?: ContainerLike[];
}

/** Names of the given Secrets the pod template reads through environment variables. */
export function secretsReadFromEnv(
  podSpec: PodSpecLike | undefined,
  secretNames: readonly string[],
): string[] {
  const wanted = new Set(secretNames);
  const found = new Set<string>();
  for (const c of [...(podSpec?.containers ?? []), ...(podSpec?.initContainers ?? [])]) {
    for (const e of c.env ?? []) {
      const n = e.valueFrom?.secretKeyRef?.name;
      if (n && wanted.has(n)) found.add(n);
    }
    for (const e of c.envFrom ?? []) {
      const n = e.secretRef?.name;
      if (n && wanted.has(n)) found.add(n);
    }
  }
  return [...found].sort();
}

/**
 * The pod-template annotation recording which token a workload was restarted for, one per
 * GitHubAppToken so two tokens naming one workload do not undo each other.
 */
export function restartAnnotation(tokenName: string): string {
  const part =
    tokenName.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(tokenName)
      ? tokenName
      : createHash("sha256").update(tokenName).digest("hex").slice(0, 16);
  return `restarted-for.ghat.dev/${part}`;
}
export const restartedAtAnnotation = "ghat.dev/restarted-at";

/**
 * Whether a listed workload must be restarted for the token with hash `tokenHash`: when it
 * was restarted for another token, or never, if this reconcile replaced the token.
 */
export function needsRestart(w: Workload, tokenName: string, tokenHash: string, changed: boolean): boolean {
  const recorded = w.templateAnnotations[restartAnnotation(tokenName)];
  return recorded === undefined ? changed : recorded !== tokenHash;
}

/** When a restart may happen: after the stagger slot and at least minInterval after the last. */
export function restartTime(w: Workload, slotAt: number, minIntervalMs: number): number {
  const last = Date.parse(w.templateAnnotations[restartedAtAnnotation] ?? "");
  return Number.isFinite(last) ? Math.max(slotAt, last + minIntervalMs) : slotAt;
}

export interface DeliveryReport {
  /** "Deployment/web reads x" for workloads reading the Secrets through env vars and not restarted. */
  envReaders: string[];
  /** Listed workloads with a restart pending. */
  scheduled: string[];
  /** Problems with listed workloads. */
  problems: string[];
  /** Whether any workload was inspected or listed (false: nothing to say). */
  relevant: boolean;
}

/** The Delivered condition for a report, or undefined when there is nothing to say. */
export function deliveryCondition(r: DeliveryReport): Omit<ConditionInput, "type"> | undefined {
  if (!r.relevant) return undefined;
  if (r.problems.length > 0) {
    return { status: "False", reason: "RestartFailed", message: r.problems.join("; ") };
  }
  if (r.envReaders.length > 0) {
    return {
      status: "False",
      reason: "EnvironmentVariables",
      message: `${r.envReaders.join("; ")} through environment variables and will keep the old token until its pods restart: mount the Secret as a file, or list the workload in spec.rollout.workloads`,
    };
  }
  if (r.scheduled.length > 0) {
    return {
      status: "True",
      reason: "RestartScheduled",
      message: `Restart scheduled for ${r.scheduled.join(", ")}; ${kubeletDelayText}`,
    };
  }
  return {
    status: "True",
    reason: "Delivered",
    message: `Consumers receive new tokens: ${kubeletDelayText}`,
  };
}

import { z } from "zod";

/** Group and version of every ghat resource. */
export const group = "ghat.dev";
export const version = "v1alpha1";
export const apiVersion = `${group}/${version}`;

/** The slice of ObjectMeta ghat reads. Unknown fields pass through untouched. */
export const objectMeta = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  generation: z.number().int().optional(),
  resourceVersion: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  finalizers: z.array(z.string()).optional(),
  deletionTimestamp: z.union([z.string(), z.date()]).optional(),
  creationTimestamp: z.union([z.string(), z.date()]).optional(),
});
export type ObjectMeta = z.infer<typeof objectMeta>;

/** Kubernetes-style condition (metav1.Condition). */
export const condition = z.object({
  type: z.string().describe("Type of condition, e.g. Ready."),
  status: z.enum(["True", "False", "Unknown"]).describe("Status of the condition: True, False or Unknown."),
  reason: z.string().describe("A PascalCase reason from ghat's closed list."),
  message: z.string().describe("A human-readable explanation."),
  lastTransitionTime: z.string().describe("When the status last changed (RFC 3339)."),
  observedGeneration: z
    .number()
    .int()
    .optional()
    .describe("The metadata.generation this condition was computed from."),
});
export type Condition = z.infer<typeof condition>;

/**
 * A Go-style duration ("90s", "15m", "1h30m"). Kept as a string in the CRD so CEL's
 * duration() can compare fields at admission.
 */
export const durationString = z
  .string()
  .regex(/^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/, "must be a duration such as 90s, 15m or 1h30m");

const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go-style duration into milliseconds. Throws on anything durationString rejects. */
export function parseDuration(text: string): number {
  const parts = [...text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) {
    throw new Error(`"${text}" is not a duration such as 90s, 15m or 1h30m`);
  }
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * (unitMs[p[2] ?? "s"] ?? 0), 0));
}

/** Formats milliseconds as a short Go-style duration (for messages). */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s % 3600 === 0 && s !== 0) return `${s / 3600}h`;
  if (s % 60 === 0 && s !== 0) return `${s / 60}m`;
  return `${s}s`;
}

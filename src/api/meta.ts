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

/**
 * A DNS-1123 subdomain (RFC 1123): what Kubernetes requires of most object names. A name
 * that is not one can never exist, and a watch filtered on it (`metadata.name=key=1`) fails.
 * The pattern is RE2- and ECMAScript-compatible, so the CRD checks exactly what zod checks.
 * @see https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#dns-subdomain-names
 */
export const dnsSubdomainPattern = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
export const maxDnsSubdomainLength = 253;

/** True when `s` is a DNS-1123 subdomain of at most 253 characters (for code that re-checks names). */
export function isDnsSubdomain(s: string): boolean {
  return s.length > 0 && s.length <= maxDnsSubdomainLength && dnsSubdomainPattern.test(s);
}

/** zod schema of an object name that must be a DNS-1123 subdomain; add `.describe()` at the use. */
export function dnsSubdomain(what = "a name") {
  return z
    .string()
    .min(1)
    .max(maxDnsSubdomainLength)
    .regex(dnsSubdomainPattern, `${what} must be a lowercase DNS subdomain (RFC 1123), e.g. my-app`);
}

/** Longest URL ghat accepts anywhere. */
export const maxUrlLength = 2048;

/**
 * An absolute http(s) URL whose text is safe to place in a config file: the authority is a
 * host name or bracketed IP literal and an optional port (so no userinfo), and nothing
 * after it is whitespace, a control character, a quote or a backslash. RE2 and ECMAScript
 * read `\xNN` the same (code point U+00NN), so the CRD pattern means the same as zod's.
 */
const urlRest = String.raw`([/?#][^\x00-\x20\x7f-\x9f"'\\]*)?`;
const urlAuthority = String.raw`([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?`;
export const httpsUrlPattern = new RegExp(`^https://${urlAuthority}${urlRest}$`);
export const httpUrlPattern = new RegExp(`^https?://${urlAuthority}${urlRest}$`);

/**
 * Re-checks a URL the way admission does (pattern, length) and as WHATWG parses it
 * (scheme, no userinfo). Returns a problem, or undefined when the URL is fine.
 */
export function urlProblem(url: string, schemes: "https" | "http(s)"): string | undefined {
  if (url.length > maxUrlLength) return `is longer than ${maxUrlLength} characters`;
  const pattern = schemes === "https" ? httpsUrlPattern : httpUrlPattern;
  if (!pattern.test(url)) {
    return `must be an ${schemes} URL without credentials, quotes, backslashes, whitespace or control characters`;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "is not a URL";
  }
  if (parsed.username !== "" || parsed.password !== "") return "must not contain credentials";
  if (!(schemes === "https" ? ["https:"] : ["https:", "http:"]).includes(parsed.protocol)) {
    return `must be an ${schemes} URL`;
  }
  return undefined;
}

/** zod schema of an http(s) URL (see httpsUrlPattern); add `.describe()` at the use. */
export function webUrl(schemes: "https" | "http(s)") {
  return z
    .string()
    .max(maxUrlLength)
    .regex(
      schemes === "https" ? httpsUrlPattern : httpUrlPattern,
      `an ${schemes} URL such as https://github.com/acme, without credentials, quotes, backslashes, whitespace or control characters`,
    )
    .refine((url) => urlProblem(url, schemes) === undefined, { message: `an ${schemes} URL that parses` });
}

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
  .max(32)
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

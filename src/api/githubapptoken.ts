import { z } from "zod";
import { condition, dnsSubdomain, durationString, objectMeta, parseDuration, webUrl } from "./meta.ts";
import { permissions } from "./permissions.ts";

export const maxRepositories = 500;
export const maxSecrets = 16;
export const maxRepositoryNameLength = 100;

export const appRef = z
  .object({
    kind: z
      .enum(["GitHubApp", "ClusterGitHubApp"])
      .default("GitHubApp")
      .describe("GitHubApp (same namespace) or ClusterGitHubApp (cluster-wide, subject to its policy)."),
    name: dnsSubdomain("appRef.name").describe("Name of the GitHubApp or ClusterGitHubApp."),
  })
  .describe("The App whose installation mints the token.");

export const installationRef = z
  .object({
    id: z.number().int().positive().optional().describe("Installation id.").meta({ format: "int64" }),
    owner: z
      .string()
      .regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/, "a GitHub user or organization login")
      .optional()
      .describe("Organization or user login the App is installed on; ghat looks the installation up."),
    repository: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,39}\/[A-Za-z0-9._-]{1,100}$/, "owner/repo")
      .optional()
      .describe("A repository (owner/repo) the installation covers; ghat looks the installation up."),
  })
  .describe("Which installation: exactly one of id, owner or repository.")
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "[has(self.id), has(self.owner), has(self.repository)].filter(x, x).size() == 1",
        message: "set exactly one of id, owner or repository",
      },
    ],
  });

export const secretFormats = [
  "token",
  "basicAuth",
  "argocdRepository",
  "argocdRepoCreds",
  "gitCredentials",
  "gitconfig",
  "netrc",
  "envFile",
  "dockerConfigJson",
  "template",
] as const;
export type SecretFormat = (typeof secretFormats)[number];

/**
 * The only Secret types ghat writes. Any other type is refused: Kubernetes fills in a
 * `kubernetes.io/service-account-token` Secret with a service account's token, and other
 * types carry meaning for other controllers.
 */
export const secretTypes = ["Opaque", "kubernetes.io/basic-auth", "kubernetes.io/dockerconfigjson"] as const;
export type SecretType = (typeof secretTypes)[number];

/** The Secret type each format writes unless `type` says otherwise. */
export const formatSecretType: Record<SecretFormat, SecretType> = {
  token: "Opaque",
  basicAuth: "kubernetes.io/basic-auth",
  argocdRepository: "Opaque",
  argocdRepoCreds: "Opaque",
  gitCredentials: "Opaque",
  gitconfig: "Opaque",
  netrc: "Opaque",
  envFile: "Opaque",
  dockerConfigJson: "kubernetes.io/dockerconfigjson",
  template: "Opaque",
};

/** Which formats may use a Secret type other than Opaque (the type's required keys exist). */
export const typeFormats: Record<Exclude<SecretType, "Opaque">, readonly SecretFormat[]> = {
  "kubernetes.io/basic-auth": ["basicAuth", "argocdRepository", "argocdRepoCreds", "template"],
  "kubernetes.io/dockerconfigjson": ["dockerConfigJson", "template"],
};

/**
 * A Secret data key as Kubernetes accepts it: `[-._a-zA-Z0-9]+`, not "." and not starting
 * with ".." (RE2- and ECMAScript-compatible, used in the CRD as is).
 * @see https://github.com/kubernetes/apimachinery/blob/v0.34.4/pkg/util/validation/validation.go (IsConfigMapKey)
 */
export const secretKeyPattern = /^([-_a-zA-Z0-9]|\.[-_a-zA-Z0-9])[-._a-zA-Z0-9]*$/;
export const maxSecretKeyLength = 253;
export const maxTemplateKeys = 32;
/** Longest template source (characters); the rendered output is bounded separately. */
export const maxTemplateSource = 16 * 1024;

/** True for a valid Secret data key ("." and ".."-prefixed keys are not). */
export function isSecretKey(key: string): boolean {
  return key.length <= maxSecretKeyLength && secretKeyPattern.test(key);
}

/**
 * Label keys a user may put on a Secret: any qualified name except those under prefixes
 * Kubernetes, ghat or Argo CD give meaning to. `argocd.argoproj.io/secret-type` turns a
 * Secret into an Argo CD cluster, repository or repo-creds Secret; only the Argo CD
 * formats set it, to their own value.
 */
export const reservedLabelPrefixes = ["kubernetes.io/", "k8s.io/", "ghat.dev/"] as const;
export const reservedLabelDomains = [".kubernetes.io/", ".k8s.io/", ".ghat.dev/"] as const;
export const reservedLabelKeys = ["app.kubernetes.io/managed-by", "argocd.argoproj.io/secret-type"] as const;
/** Label keys under app.kubernetes.io/ are Kubernetes' recommended labels, free for users but managed-by. */
export const recommendedLabelPrefix = "app.kubernetes.io/";
export const argocdSecretTypeLabel = "argocd.argoproj.io/secret-type";
export const argocdSecretType: Partial<Record<SecretFormat, string>> = {
  argocdRepository: "repository",
  argocdRepoCreds: "repo-creds",
};
export const maxLabels = 16;
export const maxLabelValueLength = 63;
/** Qualified name: optional DNS-subdomain prefix and "/", then a name of at most 63 characters. */
export const labelKeyPattern =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
export const labelValuePattern = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** A problem with one user label on a Secret of `format`, or undefined when it is allowed. */
export function labelProblem(format: SecretFormat, rawKey: string, value: string): string | undefined {
  const key = rawKey.slice(0, 320);
  const prefixLength = key.includes("/") ? key.indexOf("/") : 0;
  if (!labelKeyPattern.test(rawKey) || prefixLength > 253)
    return `label key ${JSON.stringify(key)} is not a qualified name`;
  if (key === argocdSecretTypeLabel) {
    const own = argocdSecretType[format];
    if (own === undefined) return `label ${key} is set only by the Argo CD formats`;
    if (value !== own) return `label ${key} of format ${format} is always "${own}"`;
    return undefined;
  }
  if (reservedLabelKeys.includes(key as (typeof reservedLabelKeys)[number]))
    return `label ${key} is reserved`;
  const reserved =
    reservedLabelPrefixes.some((p) => key.startsWith(p)) ||
    (!key.startsWith(recommendedLabelPrefix) && reservedLabelDomains.some((d) => key.includes(d)));
  if (reserved)
    return `label key ${JSON.stringify(key)} is under a reserved prefix (kubernetes.io, k8s.io, ghat.dev)`;
  if (value.length > maxLabelValueLength || !labelValuePattern.test(value))
    return `label ${key} has a value that is not a label value (at most ${maxLabelValueLength} characters)`;
  return undefined;
}

/** The fields of a SecretTarget that secretTargetProblems reads. */
export interface SecretTargetShape {
  format: SecretFormat;
  type?: string | undefined;
  key?: string | undefined;
  labels?: Record<string, string> | undefined;
  template?: { data: Record<string, string> } | undefined;
}

/** Problems with a target's Secret type, labels and data keys (re-checked when rendering). */
export function secretTargetProblems(target: SecretTargetShape): string[] {
  const problems: string[] = [];
  if (target.type !== undefined) {
    if (!(secretTypes as readonly string[]).includes(target.type))
      problems.push(`Secret type ${JSON.stringify(target.type)} is not one of ${secretTypes.join(", ")}`);
    else if (
      target.type !== "Opaque" &&
      !typeFormats[target.type as Exclude<SecretType, "Opaque">].includes(target.format)
    )
      problems.push(`Secret type ${target.type} does not fit format ${target.format}`);
  }
  const labels = Object.entries(target.labels ?? {});
  if (labels.length > maxLabels) problems.push(`at most ${maxLabels} labels`);
  for (const [key, value] of labels) {
    const problem = labelProblem(target.format, key, value);
    if (problem) problems.push(problem);
  }
  if (target.key !== undefined && !isSecretKey(target.key))
    problems.push(`key ${JSON.stringify(target.key)} is not a Secret data key`);
  const keys = Object.keys(target.template?.data ?? {});
  if (keys.length > maxTemplateKeys) problems.push(`at most ${maxTemplateKeys} template keys`);
  for (const key of keys)
    if (!isSecretKey(key)) problems.push(`template key ${JSON.stringify(key)} is not a Secret data key`);
  return problems;
}

/** CEL for a label key: neither reserved nor under a reserved prefix (the argocd key is checked per format). */
const labelKeyRule = [
  ...reservedLabelPrefixes.map((p) => `!k.startsWith('${p}')`),
  `(k.startsWith('${recommendedLabelPrefix}') || !(${reservedLabelDomains.map((d) => `k.contains('${d}')`).join(" || ")}))`,
  `k != 'app.kubernetes.io/managed-by'`,
].join(" && ");

const secretKey = z
  .string()
  .min(1)
  .max(maxSecretKeyLength)
  .regex(
    secretKeyPattern,
    'a Secret data key: letters, digits, "-", "_" and ".", not "." nor starting with ".."',
  );

export const secretTarget = z
  .object({
    name: dnsSubdomain("secrets[].name").describe(
      "Name of the Secret ghat writes in this namespace. ghat never overwrites a Secret it does not own.",
    ),
    format: z
      .enum(secretFormats)
      .default("token")
      .describe(
        "Shape of the Secret: token (key 'token'), basicAuth (Flux), argocdRepository, argocdRepoCreds, gitCredentials, gitconfig, netrc, envFile, dockerConfigJson, template.",
      ),
    key: secretKey
      .optional()
      .describe(
        "Data key for single-key formats (default: token, .git-credentials, .gitconfig, .netrc, .env).",
      ),
    type: z
      .enum(secretTypes)
      .optional()
      .describe(
        "Secret type; defaults to the format's. Only Opaque, kubernetes.io/basic-auth (formats with username and password) and kubernetes.io/dockerconfigjson (format dockerConfigJson) are allowed.",
      ),
    url: webUrl("https")
      .optional()
      .describe(
        "Git URL for Argo CD (repository URL or repo-creds prefix), gitconfig insteadOf and the dockerConfigJson registry; default https://<github host>/<owner>. An https URL of at most 2048 characters without credentials, quotes, backslashes, whitespace or control characters.",
      ),
    template: z
      .object({
        data: z
          .record(secretKey, z.string().max(maxTemplateSource))
          .describe(
            'Secret keys and their templates (at most 32 keys, each template at most 16 KiB). Variables: {{ token }}, {{ username }}, {{ host }}, {{ owner }}, {{ expiresAt }}, {{ apiUrl }}; filters: base64, urlencode, json, upper, lower, default "x" (at most 8 per expression, 64 expressions per template). No code, no escaping.',
          )
          .refine((d) => Object.keys(d).length >= 1 && Object.keys(d).length <= maxTemplateKeys, {
            message: `between 1 and ${maxTemplateKeys} keys`,
          })
          .meta({
            minProperties: 1,
            maxProperties: maxTemplateKeys,
            "x-kubernetes-validations": [
              {
                rule: `self.all(k, k.matches(r'${secretKeyPattern.source}'))`,
                message:
                  'keys must be Secret data keys: letters, digits, "-", "_" and ".", not "." nor starting with ".."',
              },
            ],
          }),
      })
      .optional()
      .describe("For format template: the Secret's data rendered from templates."),
    labels: z
      .record(
        z.string().max(317).regex(labelKeyPattern, "a label key"),
        z.string().max(maxLabelValueLength).regex(labelValuePattern, "a label value"),
      )
      .optional()
      .describe(
        "Extra labels on the Secret: at most 16, values at most 63 characters. Keys under kubernetes.io/, k8s.io/, ghat.dev/ (and their subdomains), app.kubernetes.io/managed-by and argocd.argoproj.io/secret-type (set by the Argo CD formats) are refused.",
      )
      .meta({
        maxProperties: maxLabels,
        "x-kubernetes-validations": [
          {
            rule: `self.all(k, k.matches(r'${labelKeyPattern.source}'))`,
            message:
              "label keys must be qualified names (optional DNS prefix and /, then at most 63 characters)",
          },
          {
            rule: `self.all(k, ${labelKeyRule})`,
            message:
              "label keys under kubernetes.io/, k8s.io/, ghat.dev/ and app.kubernetes.io/managed-by are reserved",
          },
        ],
      }),
    annotations: z.record(z.string(), z.string()).optional().describe("Extra annotations on the Secret."),
  })
  .superRefine((target, ctx) => {
    for (const message of secretTargetProblems(target)) ctx.addIssue({ code: "custom", message });
  })
  .describe("A Secret to write the token into.")
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "self.format != 'template' || has(self.template)",
        message: "format template needs template.data",
      },
      {
        rule: "self.format == 'template' || !has(self.template)",
        message: "template is only for format template",
      },
      {
        rule: `!has(self.labels) || !('${argocdSecretTypeLabel}' in self.labels) || ${Object.entries(
          argocdSecretType,
        )
          .map(([f, v]) => `(self.format == '${f}' && self.labels['${argocdSecretTypeLabel}'] == '${v}')`)
          .join(" || ")}`,
        message: `label ${argocdSecretTypeLabel} is set only by the Argo CD formats, to their own value (repository or repo-creds)`,
      },
      ...Object.entries(typeFormats).map(([type, formats]) => ({
        rule: `!has(self.type) || self.type != '${type}' || self.format in [${formats.map((f) => `'${f}'`).join(", ")}]`,
        message: `type ${type} is only for formats ${formats.join(", ")}`,
      })),
    ],
  });
export type SecretTarget = z.infer<typeof secretTarget>;

/** GitHub installation tokens live one hour; the refresh policy is checked against that. */
export const tokenLifetimeMs = 3_600_000;
const minute = 60_000;
/**
 * Bounds of the refresh policy: refresh at most half a lifetime early. The lower bound is a
 * second, not a minute: Enterprise Server and test servers issue short tokens, and a short
 * policy cannot loop (ghat's per-token mint interval and the backoff for a token that arrives
 * already below its minimum hold it back; see src/core/limits.ts).
 */
export const refreshBounds = {
  refreshBeforeMaxMs: tokenLifetimeMs / 2,
  minRemainingMaxMs: 25 * minute,
  minMs: 1_000,
} as const;

/**
 * Readable problems with a refresh policy, or [] (the reconciler re-checks what admission
 * checked: a spec stored before these rules existed is still read). Against a one-hour
 * token: 1s ≤ refreshBefore ≤ 30m, 1s ≤ minRemainingLifetime ≤ 25m, and
 * minRemainingLifetime < refreshBefore.
 */
export function refreshPolicyProblems(policy: {
  refreshBefore: string;
  minRemainingLifetime: string;
}): string[] {
  const problems: string[] = [];
  const parse = (field: string, text: string): number | undefined => {
    try {
      return parseDuration(text);
    } catch (err) {
      problems.push(`${field} ${(err as Error).message}`);
      return undefined;
    }
  };
  const before = parse("refreshBefore", policy.refreshBefore);
  const min = parse("minRemainingLifetime", policy.minRemainingLifetime);
  if (before !== undefined) {
    if (before < refreshBounds.minMs) problems.push("refreshBefore must be at least 1s");
    if (before > refreshBounds.refreshBeforeMaxMs)
      problems.push("refreshBefore must be at most 30m (half of the token's one-hour lifetime)");
  }
  if (min !== undefined) {
    if (min < refreshBounds.minMs) problems.push("minRemainingLifetime must be at least 1s");
    if (min > refreshBounds.minRemainingMaxMs) problems.push("minRemainingLifetime must be at most 25m");
  }
  if (before !== undefined && min !== undefined && before <= min)
    problems.push("refreshBefore must be longer than minRemainingLifetime");
  return problems;
}

export const refreshPolicy = z
  .object({
    refreshBefore: durationString
      .default("20m")
      .describe("Mint a new token this long before the current one expires (jittered earlier by up to 10%)."),
    minRemainingLifetime: durationString
      .default("10m")
      .describe("A Secret never holds a token with less lifetime left than this while GitHub answers."),
  })
  .superRefine((policy, ctx) => {
    for (const message of refreshPolicyProblems(policy)) ctx.addIssue({ code: "custom", message });
  })
  .describe(
    "When to mint again, against the token's one-hour lifetime: refreshBefore 1s to 30m, minRemainingLifetime 1s to 25m and shorter than refreshBefore. Refresh is scheduled from GitHub's expires_at, never on a fixed interval.",
  )
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "duration(self.refreshBefore) > duration(self.minRemainingLifetime)",
        message: "refreshBefore must be longer than minRemainingLifetime",
      },
      {
        rule: "duration(self.refreshBefore) >= duration('1s') && duration(self.refreshBefore) <= duration('30m')",
        message: "refreshBefore must be between 1s and 30m (half of the token's one-hour lifetime)",
      },
      {
        rule: "duration(self.minRemainingLifetime) >= duration('1s') && duration(self.minRemainingLifetime) <= duration('25m')",
        message: "minRemainingLifetime must be between 1s and 25m",
      },
    ],
  });
export type RefreshPolicy = z.infer<typeof refreshPolicy>;

export const workloadKinds = ["Deployment", "StatefulSet", "DaemonSet"] as const;

export const rollout = z
  .object({
    workloads: z
      .array(
        z.object({
          kind: z.enum(workloadKinds).describe("Deployment, StatefulSet or DaemonSet (apps/v1)."),
          name: dnsSubdomain("a workload name").describe("Name of the workload in this namespace."),
        }),
      )
      .min(1)
      .max(32)
      .describe(
        "Workloads in this namespace to restart (like kubectl rollout restart) after the token changed.",
      ),
    stagger: durationString.default("30s").describe("Time between restarting one workload and the next."),
    minInterval: durationString
      .default("10m")
      .describe("A workload is restarted at most once per this interval; a later change waits for it."),
  })
  .describe(
    "Opt-in restarts for workloads that read the token only at start (environment variables). Restarts happen only when the token in the Secrets changed, one workload at a time. Needs the chart's workloads.enabled.",
  );

export const githubAppTokenSpec = z
  .object({
    appRef,
    installation: installationRef,
    permissions: permissions.optional(),
    repositories: z
      .array(
        z
          .string()
          .min(1)
          .max(maxRepositoryNameLength)
          .regex(/^[A-Za-z0-9._-]{1,100}$/, "a repository name without owner"),
      )
      .max(maxRepositories)
      .optional()
      .describe(
        "Repositories (names without owner) the token may access; omitted: every repository of the installation.",
      ),
    repositoryIds: z
      .array(z.number().int().positive().meta({ format: "int64" }))
      .max(maxRepositories)
      .optional()
      .describe("Repository ids the token may access, in addition to repositories."),
    secrets: z
      .array(secretTarget)
      .min(1)
      .max(maxSecrets)
      .describe("Where the token goes: one or more Secrets in this namespace, each in a format.")
      .meta({
        "x-kubernetes-validations": [
          {
            rule: "self.all(a, self.exists_one(b, a.name == b.name))",
            message: "Secret names must be unique",
          },
        ],
      }),
    refreshPolicy: refreshPolicy.default({ refreshBefore: "20m", minRemainingLifetime: "10m" }),
    rollout: rollout.optional(),
    sharing: z
      .enum(["Namespace", "None"])
      .default("Namespace")
      .describe(
        "Namespace: GitHubAppTokens in this namespace asking for exactly the same scope (App, installation, permissions, repositories) share one minted token, so GitHub sees one mint per scope per lifetime; deleting one of them revokes the token only when no other Secret still holds it. None: this token always gets its own mint and is revoked on its own. Takes effect at the next rotation.",
      ),
  })
  .describe("A GitHub App installation token kept fresh in Secrets.")
  .meta({
    "x-kubernetes-validations": [
      {
        rule: `(has(self.repositories) ? size(self.repositories) : 0) + (has(self.repositoryIds) ? size(self.repositoryIds) : 0) <= ${maxRepositories}`,
        message: `at most ${maxRepositories} repositories in all (GitHub's limit)`,
      },
    ],
  });
export type GitHubAppTokenSpec = z.infer<typeof githubAppTokenSpec>;

export const githubAppTokenStatus = z
  .object({
    observedGeneration: z.number().int().optional().describe("The generation last processed."),
    conditions: z
      .array(condition)
      .optional()
      .describe(
        "Ready; ScopeMatched when GitHub granted less than asked; Delivered when workloads read the Secret through environment variables or a restart failed.",
      ),
    installationId: z.number().int().optional().describe("The installation the token was minted from.").meta({
      format: "int64",
    }),
    expiresAt: z.string().optional().describe("When the current token expires (GitHub's expires_at)."),
    refreshAt: z.string().optional().describe("When ghat will mint the next token."),
    permissions: z.record(z.string(), z.string()).optional().describe("Permissions GitHub granted."),
    owner: z.string().optional().describe("Account (organization or user) the installation belongs to."),
    repositorySelection: z.string().optional().describe("all or selected, as GitHub reported."),
    repositories: z.array(z.string()).optional().describe("Repositories GitHub granted (full names)."),
    secrets: z.array(z.string()).optional().describe("Secrets holding the current token."),
    failures: z.number().int().optional().describe("Consecutive failed attempts (drives backoff)."),
  })
  .describe("Observed state of the token. The token itself is only ever in the Secrets.");
export type GitHubAppTokenStatus = z.infer<typeof githubAppTokenStatus>;

export const githubAppToken = z.object({
  apiVersion: z.string(),
  kind: z.literal("GitHubAppToken"),
  metadata: objectMeta,
  spec: githubAppTokenSpec,
  status: githubAppTokenStatus.optional(),
});
export type GitHubAppToken = z.infer<typeof githubAppToken>;

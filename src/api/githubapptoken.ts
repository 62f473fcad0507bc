import { z } from "zod";
import { condition, durationString, objectMeta } from "./meta.ts";
import { permissions } from "./permissions.ts";

export const maxRepositories = 500;

export const appRef = z
  .object({
    kind: z
      .enum(["GitHubApp", "ClusterGitHubApp"])
      .default("GitHubApp")
      .describe("GitHubApp (same namespace) or ClusterGitHubApp (cluster-wide, subject to its policy)."),
    name: z.string().min(1).max(253).describe("Name of the GitHubApp or ClusterGitHubApp."),
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

export const secretTarget = z
  .object({
    name: z
      .string()
      .min(1)
      .max(253)
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "a Secret name (lowercase DNS subdomain)")
      .describe(
        "Name of the Secret ghat writes in this namespace. ghat never overwrites a Secret it does not own.",
      ),
    format: z
      .enum(secretFormats)
      .default("token")
      .describe(
        "Shape of the Secret: token (key 'token'), basicAuth (Flux), argocdRepository, argocdRepoCreds, gitCredentials, gitconfig, netrc, envFile, dockerConfigJson, template.",
      ),
    key: z
      .string()
      .regex(/^[-._a-zA-Z0-9]+$/, "a Secret data key")
      .max(253)
      .optional()
      .describe(
        "Data key for single-key formats (default: token, .git-credentials, .gitconfig, .netrc, .env).",
      ),
    type: z
      .string()
      .max(253)
      .optional()
      .describe(
        "Secret type; defaults to the format's (Opaque, kubernetes.io/basic-auth, kubernetes.io/dockerconfigjson).",
      ),
    url: z
      .string()
      .regex(/^https:\/\/\S+$/, "an https URL")
      .max(2048)
      .optional()
      .describe(
        "Git URL for Argo CD (repository URL or repo-creds prefix) and gitconfig insteadOf; default https://<github host>/<owner>.",
      ),
    template: z
      .object({
        data: z
          .record(z.string().regex(/^[-._a-zA-Z0-9]+$/), z.string().max(65536))
          .describe(
            'Secret keys and their templates. Variables: {{ token }}, {{ username }}, {{ host }}, {{ owner }}, {{ expiresAt }}, {{ apiUrl }}; filters: base64, urlencode, json, upper, lower, default "x". No code, no escaping.',
          )
          .meta({ minProperties: 1, maxProperties: 32 }),
      })
      .optional()
      .describe("For format template: the Secret's data rendered from templates."),
    labels: z.record(z.string(), z.string()).optional().describe("Extra labels on the Secret."),
    annotations: z.record(z.string(), z.string()).optional().describe("Extra annotations on the Secret."),
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
    ],
  });
export type SecretTarget = z.infer<typeof secretTarget>;

export const refreshPolicy = z
  .object({
    refreshBefore: durationString
      .default("20m")
      .describe("Mint a new token this long before the current one expires (jittered earlier by up to 10%)."),
    minRemainingLifetime: durationString
      .default("10m")
      .describe("A Secret never holds a token with less lifetime left than this while GitHub answers."),
  })
  .describe("When to mint again. Refresh is scheduled from GitHub's expires_at, never on a fixed interval.")
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "duration(self.refreshBefore) > duration(self.minRemainingLifetime)",
        message: "refreshBefore must be longer than minRemainingLifetime",
      },
      {
        rule: "duration(self.refreshBefore) < duration('1h')",
        message: "refreshBefore must be shorter than the token lifetime (1h)",
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
          name: z
            .string()
            .min(1)
            .max(253)
            .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "a workload name")
            .describe("Name of the workload in this namespace."),
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
      .array(z.string().regex(/^[A-Za-z0-9._-]{1,100}$/, "a repository name without owner"))
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
      .max(16)
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

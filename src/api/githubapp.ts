import { z } from "zod";
import { condition, dnsSubdomain, objectMeta, webUrl } from "./meta.ts";
import { permissions } from "./permissions.ts";
import { signer } from "./signer.ts";

/** Fields shared by GitHubApp and ClusterGitHubApp: who the App is and how to reach GitHub. */
export const appIdentityFields = {
  appId: z
    .number()
    .int()
    .positive()
    .optional()
    .describe("Numeric GitHub App id. Give appId or clientId; Enterprise Server before 3.14 needs appId.")
    .meta({ format: "int64" }),
  clientId: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9.]+$/, "a GitHub App client id such as Iv23liAbCdEf")
    .optional()
    .describe("GitHub App client id (e.g. Iv23li...). Used as the JWT issuer when appId is not set."),
  privateKeySecretRef: z
    .object({
      name: dnsSubdomain("privateKeySecretRef.name").describe(
        "Name of the Secret holding the App's private key.",
      ),
      key: z
        .string()
        .min(1)
        .max(253)
        .default("private-key.pem")
        .describe(
          "Key in the Secret's data. PEM (PKCS#1 or PKCS#8), base64 PEM and escaped newlines are accepted.",
        ),
    })
    .optional()
    .describe("The Secret holding the App's private key. Set this or signer."),
  signer: signer.optional(),
  baseUrl: webUrl("http(s)")
    .default("https://api.github.com")
    .describe(
      "GitHub API base URL. Enterprise Server: https://HOST/api/v3. An http(s) URL of at most 2048 characters without credentials, quotes, backslashes, whitespace or control characters.",
    ),
  caBundle: z
    .string()
    .max(65536)
    .optional()
    .describe(
      "PEM CA certificates trusted for baseUrl, in addition to the system roots (Enterprise Server).",
    ),
  proxy: z
    .string()
    .regex(/^https?:\/\/\S+$/, "an http(s) proxy URL")
    .max(2048)
    .optional()
    .describe("HTTP(S) proxy for requests to GitHub, e.g. http://proxy.corp:3128."),
};

const identityRules = [
  { rule: "has(self.appId) || has(self.clientId)", message: "set appId or clientId" },
  {
    rule: "has(self.privateKeySecretRef) != has(self.signer)",
    message:
      "set exactly one key source: privateKeySecretRef (a key in a Secret) or signer (Vault, KMS, HSM)",
  },
];

/**
 * The one Secret an App reads: its private key, a Vault token or an HSM PIN. Watched by name
 * (src/kube/cache.ts), so a change to it re-resolves the App's tokens.
 */
export function appSecretName(spec: unknown): string | undefined {
  const s = (spec ?? {}) as {
    privateKeySecretRef?: { name?: unknown };
    signer?: {
      vaultTransit?: { auth?: { tokenSecretRef?: { name?: unknown } } };
      pkcs11?: { pinSecretRef?: { name?: unknown } };
    };
  };
  const name =
    s.privateKeySecretRef?.name ??
    s.signer?.vaultTransit?.auth?.tokenSecretRef?.name ??
    s.signer?.pkcs11?.pinSecretRef?.name;
  return typeof name === "string" ? name : undefined;
}

/** What the CEL rules say, for objects read back from the cache (and older API servers). */
function oneKeySource(spec: { privateKeySecretRef?: unknown; signer?: unknown }, ctx: z.RefinementCtx): void {
  if ((spec.privateKeySecretRef === undefined) === (spec.signer === undefined)) {
    ctx.addIssue({
      code: "custom",
      message:
        "set exactly one key source: privateKeySecretRef (a key in a Secret) or signer (Vault, KMS, HSM)",
    });
  }
}

export const githubAppSpec = z
  .object(appIdentityFields)
  .describe("A GitHub App whose private key lives in a Secret of this namespace, or in a KMS or HSM.")
  .meta({ "x-kubernetes-validations": identityRules })
  .superRefine(oneKeySource);

export const appStatus = z
  .object({
    observedGeneration: z.number().int().optional().describe("The generation last processed."),
    conditions: z
      .array(condition)
      .optional()
      .describe(
        "Ready: the key parses (or the signer signs) and GitHub accepts the App's JWT (GET /app, at most every few minutes).",
      ),
    appId: z
      .number()
      .int()
      .optional()
      .describe("The App's numeric id, as GitHub reports it.")
      .meta({ format: "int64" }),
    slug: z.string().optional().describe("The App's slug, as GitHub reports it."),
    signer: z
      .string()
      .optional()
      .describe(
        "Where the key lives: privateKey (a Secret) or the keyless backend (vaultTransit, awsKms, …).",
      ),
    keyFingerprint: z
      .string()
      .optional()
      .describe("SHA-256 fingerprint of the public key of the loaded private key."),
  })
  .describe("Observed state of the App.");

/** Namespace selection for a ClusterGitHubApp. */
export const namespaceSelector = z
  .object({
    matchLabels: z
      .record(z.string(), z.string())
      .optional()
      .describe("Label key/values a namespace must have."),
    matchExpressions: z
      .array(
        z.object({
          key: z.string().describe("The label key."),
          operator: z
            .enum(["In", "NotIn", "Exists", "DoesNotExist"])
            .describe("In, NotIn, Exists or DoesNotExist."),
          values: z.array(z.string()).optional().describe("Values for In and NotIn."),
        }),
      )
      .optional()
      .describe("Label selector requirements, as in any Kubernetes label selector."),
  })
  .describe("A label selector over namespaces.");
export type NamespaceSelector = z.infer<typeof namespaceSelector>;

export const clusterAppPolicy = z
  .object({
    namespaces: z
      .object({
        names: z
          .array(z.string().min(1).max(63))
          .max(1000)
          .optional()
          .describe("Namespaces allowed by name."),
        selector: namespaceSelector.optional(),
      })
      .optional()
      .describe("Which namespaces may use this App (by name or label selector). Unset or empty: none."),
    installations: z
      .object({
        ids: z
          .array(z.number().int().positive().meta({ format: "int64" }))
          .max(1000)
          .optional()
          .describe("Installation ids allowed."),
        owners: z
          .array(z.string().min(1).max(39))
          .max(1000)
          .optional()
          .describe("Accounts (organizations or users) whose installations are allowed; '*' allows any."),
      })
      .optional()
      .describe("Which installations tokens may come from. Unset: none."),
    repositories: z
      .array(z.string().min(1).max(140))
      .max(1000)
      .optional()
      .describe(
        "Repositories a token may name, as owner/name globs ('acme/*', 'acme/svc-*', '*/*'). A token must name its repositories unless '*/*' is allowed. Unset: none.",
      ),
    maxPermissions: permissions
      .optional()
      .describe(
        "The most a token may ask for, per permission; a token must name its permissions. Unset: none.",
      ),
  })
  .describe(
    "Who may use this App and for what. Safe by default: nothing is allowed that the policy does not allow.",
  );
export type ClusterAppPolicy = z.infer<typeof clusterAppPolicy>;

export const clusterGitHubAppSpec = z
  .object({
    ...appIdentityFields,
    privateKeySecretRef: appIdentityFields.privateKeySecretRef.describe(
      "The Secret holding the App's private key, in the operator's namespace. Set this or signer.",
    ),
    policy: clusterAppPolicy.default({}),
  })
  .describe(
    "A GitHub App shared across namespaces under a policy; its key stays in the operator's namespace (or in a KMS or HSM).",
  )
  .meta({ "x-kubernetes-validations": identityRules })
  .superRefine(oneKeySource);

export const githubApp = z.object({
  apiVersion: z.string(),
  kind: z.literal("GitHubApp"),
  metadata: objectMeta,
  spec: githubAppSpec,
  status: appStatus.optional(),
});
export type GitHubApp = z.infer<typeof githubApp>;

export const clusterGitHubApp = z.object({
  apiVersion: z.string(),
  kind: z.literal("ClusterGitHubApp"),
  metadata: objectMeta,
  spec: clusterGitHubAppSpec,
  status: appStatus.optional(),
});
export type ClusterGitHubApp = z.infer<typeof clusterGitHubApp>;
export type AppSpec = z.infer<typeof githubAppSpec>;

import { z } from "zod";
import { appStatus, clusterGitHubAppSpec, githubAppSpec } from "./githubapp.ts";
import { githubAppTokenSpec, githubAppTokenStatus } from "./githubapptoken.ts";
import { group, version } from "./meta.ts";

type JsonSchema = { [key: string]: unknown };

/**
 * CustomResourceDefinitions generated from the zod schemas, the single source of truth.
 * crds/*.yaml are rendered from these by hack/gen-crds.ts and checked for drift in the tests.
 */
export function customResourceDefinitions(): JsonSchema[] {
  const readyColumns = [
    { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: "Reason", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].reason' },
  ];
  const appColumns = [
    ...readyColumns,
    { name: "App", type: "integer", jsonPath: ".status.appId" },
    { name: "Slug", type: "string", jsonPath: ".status.slug" },
    { name: "Signer", type: "string", jsonPath: ".status.signer", priority: 1 },
    { name: "Client", type: "string", jsonPath: ".spec.clientId", priority: 1 },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ];
  return [
    crd({
      kind: "GitHubAppToken",
      plural: "githubapptokens",
      shortNames: ["ghat"],
      scope: "Namespaced",
      spec: githubAppTokenSpec,
      status: githubAppTokenStatus,
      description: "A GitHub App installation token that ghat mints and keeps fresh in Secrets.",
      columns: [
        ...readyColumns,
        // Strings, not dates: kubectl renders a date column as an age, and these are in the future.
        { name: "Secrets", type: "string", jsonPath: ".status.secrets" },
        { name: "Expires", type: "string", jsonPath: ".status.expiresAt" },
        { name: "Refresh", type: "string", jsonPath: ".status.refreshAt" },
        { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
      ],
    }),
    crd({
      kind: "GitHubApp",
      plural: "githubapps",
      shortNames: ["ghapp"],
      scope: "Namespaced",
      spec: githubAppSpec,
      status: appStatus,
      description: "A GitHub App whose private key lives in a Secret of the same namespace.",
      columns: appColumns,
    }),
    crd({
      kind: "ClusterGitHubApp",
      plural: "clustergithubapps",
      shortNames: ["cghapp"],
      scope: "Cluster",
      spec: clusterGitHubAppSpec,
      status: appStatus,
      description:
        "A GitHub App shared across namespaces under a policy; its key stays in the operator's namespace.",
      columns: appColumns,
    }),
  ];
}

interface CrdInput {
  kind: string;
  plural: string;
  shortNames: string[];
  scope: "Namespaced" | "Cluster";
  spec: z.ZodType;
  status: z.ZodType;
  description: string;
  columns: JsonSchema[];
}

function crd(input: CrdInput): JsonSchema {
  const schema = {
    type: "object",
    description: input.description,
    required: ["spec"],
    properties: {
      apiVersion: { type: "string", description: "APIVersion of this object." },
      kind: { type: "string", description: "Kind of this object." },
      metadata: { type: "object" },
      spec: toStructural(
        z.toJSONSchema(input.spec, { target: "openapi-3.0", io: "input", unrepresentable: "throw" }),
      ),
      status: toStructural(z.toJSONSchema(input.status, { target: "openapi-3.0", io: "output" })),
    },
  };
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${input.plural}.${group}`, labels: { "app.kubernetes.io/part-of": "ghat" } },
    spec: {
      group,
      scope: input.scope,
      names: {
        kind: input.kind,
        listKind: `${input.kind}List`,
        plural: input.plural,
        singular: input.kind.toLowerCase(),
        shortNames: input.shortNames,
        // `kubectl get ghat-all` lists all three kinds ("ghat" is GitHubAppToken's short name,
        // and a category of the same name would hide it).
        categories: ["ghat-all"],
      },
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: input.columns,
          schema: { openAPIV3Schema: schema },
        },
      ],
    },
  };
}

/**
 * Makes zod's JSON Schema a Kubernetes structural schema: no $schema, no
 * additionalProperties:false beside properties (pruning does that job), and metadata keys
 * ordered for stable output.
 */
function toStructural(node: unknown): JsonSchema {
  if (Array.isArray(node)) return node.map(toStructural) as unknown as JsonSchema;
  if (node === null || typeof node !== "object") return node as JsonSchema;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === "$schema") continue;
    if (key === "additionalProperties" && value === false) continue;
    if (key === "x-kubernetes-validations") {
      out[key] = value;
      continue;
    }
    out[key] = typeof value === "object" ? toStructural(value) : value;
  }
  return out;
}

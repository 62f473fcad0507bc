import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { customResourceDefinitions } from "../../../src/api/crds.ts";
import { clusterGitHubApp, githubApp } from "../../../src/api/githubapp.ts";
import { githubAppToken, refreshPolicyProblems } from "../../../src/api/githubapptoken.ts";
import { dnsSubdomainPattern, isDnsSubdomain, urlProblem } from "../../../src/api/meta.ts";

const appSpec = { appId: 1, privateKeySecretRef: { name: "my-app-key" } };
const tokenSpec = {
  appRef: { name: "my-app" },
  installation: { owner: "acme" },
  secrets: [{ name: "ci-token" }],
};
const app = (spec: Record<string, unknown>) =>
  githubApp.safeParse({ apiVersion: "ghat.dev/v1alpha1", kind: "GitHubApp", metadata: { name: "a" }, spec });
const clusterApp = (spec: Record<string, unknown>) =>
  clusterGitHubApp.safeParse({
    apiVersion: "ghat.dev/v1alpha1",
    kind: "ClusterGitHubApp",
    metadata: { name: "a" },
    spec,
  });
const token = (spec: Record<string, unknown>) =>
  githubAppToken.safeParse({
    apiVersion: "ghat.dev/v1alpha1",
    kind: "GitHubAppToken",
    metadata: { name: "t", namespace: "n" },
    spec: { ...tokenSpec, ...spec },
  });
const target = (t: Record<string, unknown>) => token({ secrets: [{ name: "s", ...t }] });
const issues = (r: { success: boolean; error?: { issues: { message: string; path: PropertyKey[] }[] } }) =>
  (r.error?.issues ?? []).map((i) => `${i.path.join(".")}: ${i.message}`).join("\n");

type Schema = { properties?: Record<string, Schema>; items?: Schema; pattern?: string; [k: string]: unknown };
const crds = customResourceDefinitions() as unknown as {
  spec: { names: { kind: string }; versions: { schema: { openAPIV3Schema: Schema } }[] };
}[];
function crdSpec(kind: string): Schema {
  const crd = crds.find((c) => c.spec.names.kind === kind);
  return crd?.spec.versions[0]?.schema.openAPIV3Schema.properties?.spec ?? {};
}
const at = (s: Schema, ...path: string[]): Schema =>
  path.reduce<Schema>((n, p) => (p === "[]" ? (n.items ?? {}) : (n.properties?.[p] ?? {})), s);

describe("names are DNS-1123 subdomains", () => {
  it.each([
    ["my-app", true],
    ["a.b-c.d", true],
    ["a", true],
    ["x".repeat(253), true],
    ["x".repeat(254), false],
    ["key=1", false],
    ["My-App", false],
    ["-a", false],
    ["a-", false],
    ["a..b", false],
    ["a.-b", false],
    [".a", false],
    ["", false],
    ["a b", false],
  ])("isDnsSubdomain(%j) is %s", (name, ok) => {
    expect(isDnsSubdomain(name)).toBe(ok);
  });

  it("refuses privateKeySecretRef.name key=1 on GitHubApp and ClusterGitHubApp", () => {
    const spec = { ...appSpec, privateKeySecretRef: { name: "key=1" } };
    expect(issues(app(spec))).toMatch(
      /privateKeySecretRef\.name: privateKeySecretRef\.name must be a lowercase DNS/,
    );
    expect(issues(clusterApp(spec))).toMatch(/privateKeySecretRef\.name/);
    expect(app(appSpec).success).toBe(true);
    expect(clusterApp(appSpec).success).toBe(true);
  });

  it.each([
    ["appRef.name", { appRef: { name: "My_App" } }],
    ["secrets.0.name", { secrets: [{ name: "a..b" }] }],
    ["rollout.workloads.0.name", { rollout: { workloads: [{ kind: "Deployment", name: "web.-x" }] } }],
  ])("refuses a name that is no DNS subdomain at %s", (path, spec) => {
    expect(issues(token(spec))).toContain(`${path}:`);
  });

  it("gives every name field the same pattern in the CRDs", () => {
    const pattern = dnsSubdomainPattern.source;
    expect(at(crdSpec("GitHubApp"), "privateKeySecretRef", "name").pattern).toBe(pattern);
    expect(at(crdSpec("ClusterGitHubApp"), "privateKeySecretRef", "name").pattern).toBe(pattern);
    const t = crdSpec("GitHubAppToken");
    expect(at(t, "appRef", "name").pattern).toBe(pattern);
    expect(at(t, "secrets", "[]", "name").pattern).toBe(pattern);
    expect(at(t, "rollout", "workloads", "[]", "name").pattern).toBe(pattern);
  });
});

describe("URLs", () => {
  const injection = 'https://github.com/acme/"][core]sshCommand=touch /tmp/pwned;[x"';
  it.each([
    injection,
    "https://github.com/acme\n[core]",
    "https://user:pass@github.com/acme",
    "https://user@github.com/acme",
    "https://github.com\\@evil.example/",
    "https://github.com/a'b",
    "https://github.com/a\u0085b",
    "http://github.com/acme",
    "ftp://github.com/acme",
    "https://",
    "github.com/acme",
    `https://github.com/${"a".repeat(2030)}`,
  ])("refuses secrets[].url %j at admission (zod and the CRD pattern)", (url) => {
    expect(target({ format: "gitconfig", url }).success).toBe(false);
    const crdPattern = at(crdSpec("GitHubAppToken"), "secrets", "[]", "url");
    const accepted =
      new RegExp(crdPattern.pattern ?? "").test(url) && url.length <= Number(crdPattern.maxLength);
    expect(accepted).toBe(false);
  });

  it.each([
    "https://github.com/acme",
    "https://github.com/acme/app.git",
    "https://git.example.com:8443/%C3%BCn%C3%AF/",
    "https://[::1]:5000/x",
    "https://example.com/a?b=c#d",
    "https://xn--n3h.example/☃",
    "https://ghcr.io",
  ])("accepts secrets[].url %j", (url) => {
    expect(issues(target({ format: "argocdRepoCreds", url }))).toBe("");
  });

  it.each([
    ["https://user:pass@ghe.example/api/v3", false],
    ['https://ghe.example/api/v3"', false],
    ["ftp://ghe.example", false],
    [`https://ghe.example/${"a".repeat(2048)}`, false],
    ["http://127.0.0.1:8080", true],
    ["https://ghe.example/api/v3", true],
    ["http://[::1]:1", true],
  ])("baseUrl %j accepted: %s", (baseUrl, ok) => {
    expect(app({ ...appSpec, baseUrl }).success).toBe(ok);
    expect(clusterApp({ ...appSpec, baseUrl }).success).toBe(ok);
    expect(urlProblem(baseUrl, "http(s)") === undefined).toBe(ok);
  });
});

describe("refreshPolicy", () => {
  it.each([
    [{ refreshBefore: "20m", minRemainingLifetime: "10m" }, []],
    [{ refreshBefore: "30m", minRemainingLifetime: "25m" }, []],
    [{ refreshBefore: "2m", minRemainingLifetime: "1m" }, []],
    [{ refreshBefore: "0.5h", minRemainingLifetime: "1m30s" }, []],
    [{ refreshBefore: "31m", minRemainingLifetime: "10m" }, ["refreshBefore must be at most 30m"]],
    [
      { refreshBefore: "50m", minRemainingLifetime: "45m" },
      ["refreshBefore must be at most 30m", "minRemainingLifetime must be at most 25m"],
    ],
    [
      { refreshBefore: "500ms", minRemainingLifetime: "100ms" },
      ["refreshBefore must be at least 1s", "minRemainingLifetime must be at least 1s"],
    ],
    [
      { refreshBefore: "10m", minRemainingLifetime: "10m" },
      ["refreshBefore must be longer than minRemainingLifetime"],
    ],
    [
      { refreshBefore: "5m", minRemainingLifetime: "10m" },
      ["refreshBefore must be longer than minRemainingLifetime"],
    ],
    [{ refreshBefore: "1h30", minRemainingLifetime: "10m" }, ["refreshBefore"]],
  ])("%j has problems %j", (policy, expected) => {
    const problems = refreshPolicyProblems(policy);
    expect(problems).toHaveLength(expected.length);
    expected.forEach((p, i) => {
      expect(problems[i]).toContain(p);
    });
    expect(token({ refreshPolicy: policy }).success).toBe(expected.length === 0);
  });

  it("keeps today's defaults valid", () => {
    const parsed = token({});
    expect(parsed.success).toBe(true);
    expect(parsed.data?.spec.refreshPolicy).toEqual({ refreshBefore: "20m", minRemainingLifetime: "10m" });
  });

  it("checks the same bounds at admission with CEL", () => {
    const rules = (at(crdSpec("GitHubAppToken"), "refreshPolicy")["x-kubernetes-validations"] ?? []) as {
      rule: string;
    }[];
    const all = rules.map((r) => r.rule).join("\n");
    for (const bound of [
      "duration('1s')",
      "duration('30m')",
      "duration('25m')",
      "duration(self.minRemainingLifetime)",
    ])
      expect(all).toContain(bound);
  });
});

describe("counts", () => {
  it("allows at most 16 Secrets, 500 repositories of at most 100 characters", () => {
    const secrets = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `s${i}` }));
    expect(token({ secrets: secrets(16) }).success).toBe(true);
    expect(token({ secrets: secrets(17) }).success).toBe(false);
    const repos = (n: number) => Array.from({ length: n }, (_, i) => `r${i}`);
    expect(token({ repositories: repos(500) }).success).toBe(true);
    expect(token({ repositories: repos(501) }).success).toBe(false);
    expect(token({ repositories: ["x".repeat(100)] }).success).toBe(true);
    expect(token({ repositories: ["x".repeat(101)] }).success).toBe(false);
    expect(at(crdSpec("GitHubAppToken"), "repositories", "[]").maxLength).toBe(100);
    expect(at(crdSpec("GitHubAppToken"), "secrets").maxItems).toBe(16);
  });

  it("bounds permissions to GitHub's names (fewer than 100)", () => {
    expect(Number(at(crdSpec("GitHubAppToken"), "permissions").maxProperties)).toBeLessThanOrEqual(100);
  });
});

describe("Secret type, labels and data keys", () => {
  it.each([
    [{ type: "kubernetes.io/service-account-token" }, "secrets.0.type"],
    [{ type: "kubernetes.io/tls" }, "secrets.0.type"],
    [{ type: "kubernetes.io/dockerconfigjson" }, "does not fit format token"],
    [{ format: "netrc", type: "kubernetes.io/basic-auth" }, "does not fit format netrc"],
    [{ labels: { "argocd.argoproj.io/secret-type": "cluster" } }, "set only by the Argo CD formats"],
    [
      {
        format: "argocdRepoCreds",
        url: "https://github.com/acme",
        labels: { "argocd.argoproj.io/secret-type": "cluster" },
      },
      'always "repo-creds"',
    ],
    [{ labels: { "kubernetes.io/metadata.name": "x" } }, "reserved prefix"],
    [{ labels: { "k8s.io/x": "y" } }, "reserved prefix"],
    [{ labels: { "node-role.kubernetes.io/x": "y" } }, "reserved prefix"],
    [{ labels: { "ghat.dev/token": "x" } }, "reserved prefix"],
    [{ labels: { "app.kubernetes.io/managed-by": "x" } }, "reserved"],
    [{ labels: { team: "x".repeat(64) } }, "secrets.0.labels.team"],
    [{ labels: { "a b": "x" } }, "secrets.0.labels"],
    [
      { labels: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`l${i}`, "v"])) },
      "at most 16 labels",
    ],
    [{ key: "a/b" }, "secrets.0.key"],
    [{ key: "." }, "secrets.0.key"],
    [{ key: "..x" }, "secrets.0.key"],
    [{ key: "x".repeat(254) }, "secrets.0.key"],
    [{ format: "template", template: { data: { "a/b": "x" } } }, "secrets.0.template.data"],
    [
      {
        format: "template",
        template: { data: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "x"])) },
      },
      "secrets.0.template.data",
    ],
    [
      { format: "template", template: { data: { a: "x".repeat(16 * 1024 + 1) } } },
      "secrets.0.template.data.a",
    ],
  ])("refuses %j", (t, message) => {
    const r = target(t);
    expect(r.success).toBe(false);
    expect(issues(r)).toContain(message);
  });

  it.each([
    [{ type: "Opaque", labels: { team: "a", "app.kubernetes.io/name": "bot", "example.com/x": "" } }],
    [{ format: "basicAuth", type: "kubernetes.io/basic-auth" }],
    [{ format: "dockerConfigJson", type: "kubernetes.io/dockerconfigjson" }],
    [
      {
        format: "argocdRepository",
        url: "https://github.com/a/b.git",
        labels: { "argocd.argoproj.io/secret-type": "repository" },
      },
    ],
    [{ key: ".env.local" }],
    [{ format: "template", template: { data: { ".a": "{{ token }}", "x-y_z.1": "{{ host }}" } } }],
  ])("accepts %j", (t) => {
    expect(issues(target(t))).toBe("");
  });

  it("checks label keys, reserved prefixes, the Argo CD label and data keys in the CRD too", () => {
    const secret = at(crdSpec("GitHubAppToken"), "secrets", "[]");
    expect(at(secret, "type").enum).toEqual([
      "Opaque",
      "kubernetes.io/basic-auth",
      "kubernetes.io/dockerconfigjson",
    ]);
    const labels = at(secret, "labels");
    expect(labels.maxProperties).toBe(16);
    expect(JSON.stringify(labels["x-kubernetes-validations"])).toContain("k.startsWith('kubernetes.io/')");
    expect(JSON.stringify(secret["x-kubernetes-validations"])).toContain("argocd.argoproj.io/secret-type");
    expect(at(secret, "template", "data").maxProperties).toBe(32);
    expect(JSON.stringify(at(secret, "template", "data")["x-kubernetes-validations"])).toContain(
      "k.matches(r'",
    );
  });
});

describe("examples", () => {
  const dir = new URL("../../../examples/", import.meta.url);
  const docs = readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((f) =>
      parseAllDocuments(readFileSync(new URL(f, dir), "utf8")).map(
        (d, i) => [`${f}#${i}`, d.toJS()] as const,
      ),
    )
    .filter(([, doc]) => doc);
  it.each(docs)("%s satisfies its schema", (_name, doc) => {
    const schema = {
      GitHubApp: githubApp,
      ClusterGitHubApp: clusterGitHubApp,
      GitHubAppToken: githubAppToken,
    }[(doc as { kind: string }).kind];
    if (!schema) return;
    expect(issues(schema.safeParse(doc))).toBe("");
  });
});

// biome-ignore-all lint/suspicious/noTemplateCurlyInString: hostile template input on purpose
import { generateKeyPairSync, randomBytes } from "node:crypto";
import fc from "fast-check";
import { permissionNames } from "../../src/api/permissions.ts";

/**
 * Hostile inputs for test/e2e/hostile.test.ts: GitHubAppToken, GitHubApp and ClusterGitHubApp
 * specs, private-key Secret contents, templates and hand edits of managed Secrets.
 *
 * Each generated case says what a user must see: refused by `kubectl apply` with a message
 * naming the field, a Ready condition with one exact reason, or (for random combinations)
 * either of the two with any reason from the known list. Specs are plain data; a Secret name
 * starting with "@" is completed with the token's name by the test (so names never collide).
 *
 * Left out on purpose, because they break ghat today (see the report of issue #8):
 *   - key Secret names with "," "=" or "\" (the key Secret watch never syncs; reconciles hang);
 *   - baseUrl values that match the CRD pattern but are not URLs ("http://[");
 *   - Secret fields the API server refuses on the Secret (label and annotation keys or values,
 *     data keys ".", ".." and "..x", Secret names like "a..b", types such as kubernetes.io/tls,
 *     token names over 63 characters);
 *   - dockerConfigJson URLs that are not URLs;
 *   - refresh policies within a second or so of the token lifetime (mint loop);
 *   - repository globs with many "*" (catastrophic regex backtracking);
 *   - refresh-at annotations more than ~24.8 days ahead (timer overflow).
 */

/** What must happen to a hostile object. */
export type Expectation =
  /** `kubectl apply` fails; stderr names `field` (and says `says`, when given). */
  | { refused: string; says?: string }
  /** Accepted; the token's Ready condition ends with this reason (Issued: status True). */
  | { reason: string; says?: string }
  /** Accepted with a clear Ready (any known reason), or refused naming a field. */
  | { either: true };

export interface Case {
  label: string;
  spec: Record<string, unknown>;
  expect: Expectation;
}

const refused = (field: string, says?: string): Expectation =>
  says ? { refused: field, says } : { refused: field };
const reason = (r: string, says?: string): Expectation => (says ? { reason: r, says } : { reason: r });
const either: Expectation = { either: true };

// ---------------------------------------------------------------------------------------------
// Building blocks

/** Printable text from the whole of Unicode (emoji, RTL, combining marks, CJK, ...). */
export const unicode = (maxLength = 40) => fc.string({ unit: "grapheme", minLength: 1, maxLength });

const dnsLabel = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?$/);
/** A Secret name suffix that is a valid DNS subdomain once prefixed with "<token>-". */
const secretSuffix = fc
  .array(dnsLabel, { minLength: 1, maxLength: 3 })
  .map((labels) => `@-${labels.join(".")}`);

const labelName = fc.stringMatching(/^[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?$/);
/** Label and annotation keys the API server accepts, including ghat's own (ghat's win). */
const qualifiedKey = fc.oneof(
  labelName,
  fc
    .tuple(fc.constantFrom("hostile.example", "ghat.dev", "a.b.c", "kubernetes.io"), labelName)
    .map(([prefix, name]) => `${prefix}/${name}`),
  fc.constantFrom(
    "ghat.dev/token",
    "app.kubernetes.io/managed-by",
    "argocd.argoproj.io/secret-type",
    "ghat.dev/expires-at",
    "ghat.dev/token-hash",
  ),
);
const labelValue = fc.oneof(fc.constant(""), labelName);
/** Label keys a tenant may put on its Secrets (no reserved prefix). */
const tenantLabelKey = fc.oneof(
  labelName,
  fc
    .tuple(fc.constantFrom("hostile.example", "a.b.c"), labelName)
    .map(([prefix, name]) => `${prefix}/${name}`),
);
const annotationValue = fc.oneof(
  unicode(80),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("", "x".repeat(20_000), "${process.env}", "{{ token }}"),
);

/** Data keys a Secret accepts ("." and names starting with ".." are refused, see above). */
const dataKey = fc.oneof(
  fc.constantFrom("token", "GITHUB_TOKEN", "a.b-c_d", "-", "_", ".env.local", "x".repeat(253)),
  fc.stringMatching(/^[A-Za-z0-9_-][-._A-Za-z0-9]{0,30}$/),
);

/** https URLs that parse (for url fields: Argo CD, gitconfig, registries). */
const httpsUrl = fc.constantFrom(
  "https://github.com/acme",
  "https://github.com/acme/app.git",
  "https://git.example.com:8443/%C3%BCn%C3%AF/",
  "https://ghcr.io",
  "https://registry.example.com:5000/ns",
  "https://[::1]:5000/x",
  "https://example.com/a?b=c#d",
  "https://xn--n3h.example/☃",
);

// ---------------------------------------------------------------------------------------------
// Templates

/** The values a template sees; token and expiresAt are only known once minted. */
export interface TemplateValues {
  token: string;
  username: string;
  host: string;
  owner: string;
  expiresAt: string;
  apiUrl: string;
}
type Variable = keyof TemplateValues;
const variables: Variable[] = ["token", "username", "host", "owner", "expiresAt", "apiUrl"];
type Filter =
  | { name: "base64" | "urlencode" | "json" | "upper" | "lower" }
  | { name: "default"; arg: string };

/** One piece of a template: literal text, a valid placeholder, or a placeholder that must be refused. */
export type Segment =
  | { text: string }
  | { text: string; variable: Variable; filters: Filter[] }
  /** `at`: offset of the problem inside `text`. */
  | { text: string; error: string; at: number };

/** Literal text: anything without "{{" that cannot join a neighbour into "{{". */
const literal: fc.Arbitrary<Segment> = fc
  .oneof(
    { weight: 4, arbitrary: unicode(30) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        "${process.env}",
        "${process.exit(1)}",
        "<%= process.env.HOME %>",
        "<% require('child_process').execSync('id') %>",
        "#{`id`}",
        "$(id)",
        "}}",
        "} }",
        "{ {",
        "{%raw%}",
        "\\u0000",
        "\n",
        "\r\n",
        "\t",
        "'\"`",
      ),
    },
    // Long, but within the 16 KiB template source limit even when a template holds several.
    { weight: 1, arbitrary: fc.constant(`${"lorem ipsum ".repeat(40)}\n`.repeat(6)) },
  )
  .filter((s) => !s.includes("{{") && !s.startsWith("{") && !s.endsWith("{"))
  .map((text) => ({ text }));

const space = fc.constantFrom("", " ", "  ", "\t", "\n", " \n ");
const filter: fc.Arbitrary<Filter> = fc.oneof(
  fc.constantFrom<Filter>(
    { name: "base64" },
    { name: "urlencode" },
    { name: "json" },
    { name: "upper" },
    { name: "lower" },
  ),
  fc
    .string({ unit: "grapheme", maxLength: 12 })
    .filter((s) => !/["|}]/.test(s))
    .map((arg): Filter => ({ name: "default", arg })),
);
const placeholder: fc.Arbitrary<Segment> = fc
  .tuple(fc.constantFrom(...variables), fc.array(filter, { maxLength: 3 }), space, space)
  .map(([variable, filters, s1, s2]) => ({
    text: `{{${s1}${variable}${filters.map((f) => ` | ${f.name}${f.name === "default" ? ` "${f.arg}"` : ""}`).join("")}${s2}}}`,
    variable,
    filters,
  }));

/** Placeholders that try to reach outside the template language; `at` is where the problem is. */
const escapeAttempt: fc.Arbitrary<Segment> = fc.oneof(
  fc
    .constantFrom(
      "constructor",
      "__proto__",
      "toString",
      "process",
      "process.env.HOME",
      "this.constructor",
      "token.constructor",
      "globalThis",
      "#each items",
      "> partial",
      "! comment",
      "token()",
      "",
    )
    // An empty name is reported where it would start, after the spaces: "{{  }}" at 4.
    .map((name) => ({ text: `{{ ${name} }}`, error: `unknown variable "${name}"`, at: name === "" ? 4 : 3 })),
  fc
    .constantFrom(
      "nonexistent",
      "exec",
      "Base64",
      "constructor",
      "default x",
      "base64()",
      'exec "id"',
      "eval",
    )
    .map((bad) => {
      const text = `{{ token | ${bad} }}`;
      return { text, error: `unknown filter "${bad}"`, at: text.indexOf(bad, 8) };
    }),
  fc.integer({ min: 3, max: 400 }).map((depth) => {
    const name = `${"{".repeat(depth - 2)} token`;
    return {
      text: `${"{".repeat(depth)} token ${"}".repeat(depth)}`,
      error: `unknown variable "${name.slice(0, 40)}"`,
      at: 2,
    };
  }),
);

/** A template made of segments, optionally ending with an unclosed "{{". */
export const template: fc.Arbitrary<Segment[]> = fc
  .tuple(
    fc.array(
      fc.oneof({ weight: 3, arbitrary: literal }, { weight: 3, arbitrary: placeholder }, escapeAttempt),
      {
        minLength: 1,
        maxLength: 8,
      },
    ),
    fc.option(fc.constant<Segment>({ text: "{{ token", error: '"{{" is not closed by "}}"', at: 0 }), {
      freq: 8,
      nil: undefined,
    }),
  )
  .map(([segments, unclosed]) => (unclosed ? [...segments, unclosed] : segments))
  // Within the 16 KiB a template's source may hold (larger ones are refused at admission).
  .filter((segments) => Buffer.byteLength(segments.map((s) => s.text).join("")) <= 16_384);

/** Templates without errors (for outputs that must work). */
export const validTemplate: fc.Arbitrary<Segment[]> = fc
  .array(fc.oneof(literal, placeholder), { minLength: 1, maxLength: 6 })
  // Within the 16 KiB a template's source may hold (larger ones are refused at admission).
  .filter((segments) => Buffer.byteLength(segments.map((s) => s.text).join("")) <= 16_384);

export const source = (segments: Segment[]) => segments.map((s) => s.text).join("");

/** Where the first problem is, as "line L, column C" and what it says; undefined for a valid template. */
export function firstProblem(segments: Segment[]): { position: string; says: string } | undefined {
  let offset = 0;
  for (const s of segments) {
    if ("error" in s) {
      const before = (source(segments).slice(0, offset + s.at) || "").split("\n");
      return {
        position: `line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1}`,
        says: s.error,
      };
    }
    offset += s.text.length;
  }
  return undefined;
}

/** The text a valid template must render to (an independent model of the filters). */
export function rendered(segments: Segment[], values: TemplateValues): string {
  return segments
    .map((s) => {
      if (!("variable" in s)) return s.text;
      return s.filters.reduce((v, f) => {
        switch (f.name) {
          case "base64":
            return Buffer.from(v).toString("base64");
          case "urlencode":
            return encodeURIComponent(v);
          case "json":
            return JSON.stringify(v);
          case "upper":
            return v.toUpperCase();
          case "lower":
            return v.toLowerCase();
          case "default":
            return v === "" ? f.arg : v;
        }
        return v;
      }, values[s.variable]);
    })
    .join("");
}

// ---------------------------------------------------------------------------------------------
// GitHubAppToken

/** Permissions the simulated installation grants (see startGitHub in operator.ts). */
const granted: Record<string, readonly string[]> = {
  contents: ["read", "write"],
  metadata: ["read"],
  issues: ["read", "write"],
  pull_requests: ["read"],
};

const validPermissions = fc
  .subarray(Object.keys(granted))
  .chain((names) => fc.tuple(...names.map((n) => fc.constantFrom(...(granted[n] ?? [])).map((l) => [n, l]))))
  .map((pairs) => Object.fromEntries(pairs) as Record<string, string>);

const validInstallation = fc.constantFrom<Record<string, unknown>>(
  { owner: "acme" },
  { id: 9001 },
  { repository: "acme/app" },
  { repository: "acme/docs" },
);

/** A target the API server and ghat both accept, in any format. */
const validTarget: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    secretSuffix,
    fc.oneof(
      fc.record({ format: fc.constant("token"), key: dataKey }, { requiredKeys: ["format"] }),
      fc.constant({ format: "basicAuth" }),
      fc.record({ format: fc.constant("gitCredentials"), key: dataKey }, { requiredKeys: ["format"] }),
      fc.record({ format: fc.constant("gitconfig"), url: httpsUrl }, { requiredKeys: ["format"] }),
      fc.record({ format: fc.constant("netrc"), key: dataKey }, { requiredKeys: ["format"] }),
      fc.record({ format: fc.constant("envFile"), key: dataKey }, { requiredKeys: ["format"] }),
      fc.record({ format: fc.constant("dockerConfigJson"), url: httpsUrl }, { requiredKeys: ["format"] }),
      fc.record({ format: fc.constant("argocdRepoCreds"), url: httpsUrl }, { requiredKeys: ["format"] }),
      fc.record({ format: fc.constant("argocdRepository"), url: httpsUrl }),
      fc.record({
        format: fc.constant("template"),
        template: fc.record({
          data: fc.dictionary(dataKey, validTemplate.map(source), { minKeys: 1, maxKeys: 3 }),
        }),
      }),
    ),
    fc.record(
      {
        // Only the types and label keys the formats allow (src/api/githubapptoken.ts); the
        // others are refused at admission (hostileToken).
        type: fc.constantFrom("Opaque"),
        labels: fc.dictionary(tenantLabelKey, labelValue, { maxKeys: 4 }),
        annotations: fc.dictionary(qualifiedKey, annotationValue, { maxKeys: 4 }),
      },
      { requiredKeys: [] },
    ),
  )
  .map(([name, shape, extra]) => ({ name, ...shape, ...extra }));

const uniqueTargets = (min: number, max: number) =>
  fc.uniqueArray(validTarget, { minLength: min, maxLength: max, selector: (t) => t.name });

/** Refresh policies that keep refreshes minutes apart. */
const validRefreshPolicy = fc.constantFrom(
  { refreshBefore: "30m", minRemainingLifetime: "5m" },
  { refreshBefore: "2s", minRemainingLifetime: "1s" },
  { refreshBefore: "0.5h", minRemainingLifetime: "1m30s" },
  { refreshBefore: "1200000ms", minRemainingLifetime: "599.999s" },
);

/** A spec that must end Ready=True/Issued, however odd its outputs. */
export const validToken: fc.Arbitrary<Case> = fc
  .record(
    {
      installation: validInstallation,
      permissions: validPermissions,
      repositories: fc.subarray(["app", "library", "docs", "APP", "Library"], { minLength: 1 }),
      repositoryIds: fc.subarray([501, 502, 503], { minLength: 1 }),
      secrets: uniqueTargets(1, 4),
      refreshPolicy: validRefreshPolicy,
      sharing: fc.constantFrom("Namespace", "None"),
    },
    { requiredKeys: ["installation", "secrets"] },
  )
  .map((spec) => {
    // Argo CD repository URLs default from exactly one repository; the generator always sets url.
    return { label: "valid", spec: { appRef: { name: "app" }, ...spec }, expect: reason("Issued") };
  });

const base = {
  appRef: { name: "app" },
  installation: { owner: "acme" },
  permissions: { contents: "read" },
  secrets: [{ name: "@-out" }],
};
const defect = (label: string, patch: Record<string, unknown>, expect: Expectation): Case => ({
  label,
  spec: { ...base, ...patch },
  expect,
});

/** A valid spec with exactly one thing wrong, and what that must produce. */
export const oneDefect: fc.Arbitrary<Case> = fc.oneof(
  // References that point nowhere.
  dnsLabel.map((name) =>
    defect("missing App", { appRef: { name: `nope-${name}` } }, reason("AppNotFound", "does not exist")),
  ),
  unicode(30)
    .filter((n) => !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(n))
    .map((name) => defect("App name no object can have", { appRef: { name } }, refused("spec.appRef.name"))),
  dnsLabel.map((name) =>
    defect(
      "missing ClusterGitHubApp",
      { appRef: { kind: "ClusterGitHubApp", name: `nope-${name}` } },
      reason("AppNotFound", "does not exist"),
    ),
  ),
  fc
    .stringMatching(/^[a-z][a-z0-9-]{0,30}[a-z0-9]$/)
    .map((owner) =>
      defect(
        "uninstalled owner",
        { installation: { owner: `zz-${owner}` } },
        reason("InstallationNotFound", "404"),
      ),
    ),
  fc
    .integer({ min: 1, max: Number.MAX_SAFE_INTEGER })
    .filter((id) => id !== 9001)
    .map((id) => defect("unknown installation id", { installation: { id } }, reason("InstallationNotFound"))),
  fc
    .constantFrom("acme/nope", "acme/..", "acme/.", "nobody/app", "acme/a.b-c_d")
    .map((repository) =>
      defect(
        "repository outside the installation",
        { installation: { repository } },
        reason("InstallationNotFound"),
      ),
    ),
  // Scope GitHub does not grant.
  fc
    .constantFrom<Record<string, string>>(
      { administration: "read" },
      { pull_requests: "write" },
      { repository_projects: "admin" },
      { organization_projects: "admin" },
      { workflows: "write" },
      Object.fromEntries(
        permissionNames.map((n) => [n, n === "workflows" || n === "profile" ? "write" : "read"]),
      ),
    )
    .map((permissions) =>
      defect("permissions not granted", { permissions }, reason("PermissionsNotGranted", "not granted")),
    ),
  fc
    .uniqueArray(fc.stringMatching(/^[A-Za-z0-9._-]{1,100}$/), { minLength: 1, maxLength: 500 })
    .filter((names) => names.some((n) => !["app", "library", "docs"].includes(n.toLowerCase())))
    .map((repositories) =>
      defect(
        "repositories not granted",
        { repositories },
        reason("RepositoriesNotGranted", "not accessible"),
      ),
    ),
  fc
    .array(fc.integer({ min: 504, max: Number.MAX_SAFE_INTEGER }), { minLength: 1, maxLength: 50 })
    .map((repositoryIds) =>
      defect("repository ids not granted", { repositoryIds }, reason("RepositoriesNotGranted")),
    ),
  fc.constant(
    defect(
      "Argo CD repository without url and several repositories",
      { repositories: ["app", "library"], secrets: [{ name: "@-argo", format: "argocdRepository" }] },
      reason("InvalidSpec", "needs url"),
    ),
  ),
  fc.constant(
    defect("a foreign Secret's name", { secrets: [{ name: "foreign" }] }, reason("SecretConflict")),
  ),
  // Refused at admission.
  fc.constant(
    defect(
      "installation id and owner",
      { installation: { id: 9001, owner: "acme" } },
      refused("spec.installation", "set exactly one of id, owner or repository"),
    ),
  ),
  fc.constant(
    defect(
      "installation owner and repository",
      { installation: { owner: "acme", repository: "acme/app" } },
      refused("spec.installation", "set exactly one"),
    ),
  ),
  fc.constant(
    defect("empty installation", { installation: {} }, refused("spec.installation", "set exactly one")),
  ),
  unicode(20)
    .filter((s) => !/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/.test(s))
    .map((owner) => defect("odd owner", { installation: { owner } }, refused("spec.installation.owner"))),
  fc
    .oneof(
      fc.integer({ max: 0 }),
      fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Number.isInteger(n)),
      fc.constantFrom(2 ** 53, 2 ** 63, 1e300, "9001", true, [9001], { id: 9001 }),
    )
    .map((id) =>
      defect(
        "installation id out of range or of the wrong type",
        { installation: { id } },
        refused("spec.installation.id"),
      ),
    ),
  fc
    .oneof(
      unicode(20).filter((n) => !(permissionNames as string[]).includes(n)),
      fc.constantFrom("__proto__", "constructor", "Contents", "contents ", "toString", ""),
    )
    .map((name) =>
      defect(
        "unknown permission",
        { permissions: Object.fromEntries([[name, "read"]]) },
        refused("spec.permissions", name === "" ? undefined : "unknown permission name"),
      ),
    ),
  fc
    .constantFrom("admin", "READ", "Write", "none", "", "read ", "root")
    .map((level) =>
      defect("odd permission level", { permissions: { contents: level } }, refused("spec.permissions")),
    ),
  fc
    .constantFrom(1, true, ["read"], { level: "read" })
    .map((level) =>
      defect(
        "permission level of the wrong type",
        { permissions: { contents: level } },
        refused("spec.permissions.contents"),
      ),
    ),
  fc.constant(
    defect(
      "600 repositories",
      { repositories: Array.from({ length: 600 }, (_, i) => `r${i}`) },
      refused("spec.repositories", "must have at most 500 items"),
    ),
  ),
  fc.constant(
    defect(
      "300 names and 300 ids",
      {
        repositories: Array.from({ length: 300 }, (_, i) => `r${i}`),
        repositoryIds: Array.from({ length: 300 }, (_, i) => i + 1),
      },
      refused("spec", "at most 500 repositories in all"),
    ),
  ),
  fc
    .oneof(unicode(20), fc.constantFrom("acme/app", "", "a".repeat(101), "a b", "../x"))
    .filter((r) => !/^[A-Za-z0-9._-]{1,100}$/.test(r))
    .map((r) => defect("odd repository name", { repositories: ["app", r] }, refused("spec.repositories[1]"))),
  fc.constant(defect("no Secrets", { secrets: [] }, refused("spec.secrets", "at least 1 items"))),
  fc
    .integer({ min: 17, max: 100 })
    .map((n) =>
      defect(
        `${n} Secrets`,
        { secrets: Array.from({ length: n }, (_, i) => ({ name: `@-${i}` })) },
        refused("spec.secrets", "must have at most 16 items"),
      ),
    ),
  fc.constant(
    defect(
      "duplicate Secret names",
      { secrets: [{ name: "@-dup" }, { name: "@-dup", format: "basicAuth" }] },
      refused("spec.secrets", "Secret names must be unique"),
    ),
  ),
  fc.constant(
    defect(
      "template without data",
      { secrets: [{ name: "@-t", format: "template" }] },
      refused("spec.secrets[0]", "format template needs template.data"),
    ),
  ),
  fc.constant(
    defect(
      "template on another format",
      { secrets: [{ name: "@-t", format: "netrc", template: { data: { a: "{{ token }}" } } }] },
      refused("spec.secrets[0]", "template is only for format template"),
    ),
  ),
  fc.constant(
    defect(
      "template with no keys",
      { secrets: [{ name: "@-t", format: "template", template: { data: {} } }] },
      refused("spec.secrets[0].template.data"),
    ),
  ),
  fc.constant(
    defect(
      "template of 64 KiB + 1",
      { secrets: [{ name: "@-t", format: "template", template: { data: { a: "x".repeat(65_537) } } }] },
      refused("spec.secrets[0].template.data"),
    ),
  ),
  fc
    .oneof(unicode(20), fc.constantFrom("UPPER", "-lead", "trail-", "a_b", "a/b", "", "a".repeat(254)))
    .filter((n) => !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(n) || n.length > 253)
    .map((name) => defect("odd Secret name", { secrets: [{ name }] }, refused("spec.secrets[0].name"))),
  fc
    .oneof(unicode(12), fc.constantFrom("Token", "TOKEN", "json", "", "basic-auth"))
    .map((format) =>
      defect("unknown format", { secrets: [{ name: "@-f", format }] }, refused("spec.secrets[0].format")),
    ),
  fc
    .oneof(unicode(12), fc.constantFrom("a/b", "", "a b", "x".repeat(254)))
    .filter((k) => !/^[-._a-zA-Z0-9]+$/.test(k) || k.length > 253)
    .map((key) =>
      defect("odd data key", { secrets: [{ name: "@-k", key }] }, refused("spec.secrets[0].key")),
    ),
  fc
    .constantFrom("http://github.com/acme", "ftp://x", "https://", "https://a b", "github.com/acme", "")
    .map((url) =>
      defect(
        "odd url",
        { secrets: [{ name: "@-u", format: "gitconfig", url }] },
        refused("spec.secrets[0].url"),
      ),
    ),
  fc
    .tuple(
      fc.oneof(
        unicode(10),
        fc.constantFrom(
          "5 m",
          "-1m",
          "1d",
          "1y",
          "",
          "1us",
          "1h30",
          "m",
          "1e3s",
          "0x10s",
          "9999999999999999999999h",
        ),
      ),
      fc.boolean(),
    )
    .filter(([d]) => !/^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/.test(d))
    .map(([d, first]) =>
      defect(
        "unparseable duration",
        {
          refreshPolicy: first
            ? { refreshBefore: d, minRemainingLifetime: "1m" }
            : { refreshBefore: "20m", minRemainingLifetime: d },
        },
        refused("spec.refreshPolicy"),
      ),
    ),
  fc
    .constantFrom(
      ["10m", "10m"],
      ["5m", "10m"],
      ["0s", "0s"],
      ["1h", "10m"],
      ["61m", "10m"],
      ["2h", "1m"],
      ["99999999999999h", "1m"],
      ["20m", "99999999999999h"],
    )
    .map(([refreshBefore, minRemainingLifetime]) =>
      defect(
        "refresh policy out of range",
        { refreshPolicy: { refreshBefore, minRemainingLifetime } },
        refused("spec.refreshPolicy", "refreshBefore must be"),
      ),
    ),
  fc
    .oneof(unicode(10), fc.constantFrom("none", "Cluster", ""))
    .map((sharing) => defect("unknown sharing", { sharing }, refused("spec.sharing"))),
  fc
    .constantFrom<[string, unknown]>(
      ["appRef", "app"],
      ["appRef", { name: "" }],
      ["appRef", { name: "x".repeat(254) }],
      ["appRef", { kind: "Namespace", name: "app" }],
      ["appRef", { name: 42 }],
      ["installation", "acme"],
      ["installation", null],
      ["permissions", "read"],
      ["permissions", ["contents"]],
      ["repositories", "app"],
      ["repositories", [1, 2]],
      ["repositoryIds", ["501"]],
      ["secrets", "token"],
      ["secrets", { name: "x" }],
      ["secrets", [null]],
      ["refreshPolicy", "20m"],
      ["sharing", true],
    )
    .map(([field, value]) =>
      defect(`spec.${field} of the wrong shape`, { [field]: value }, refused(`spec.${field}`)),
    ),
  fc
    .oneof(fc.constantFrom("bogus", "status", "appref", "token", "kind"), labelName)
    .filter(
      (k) =>
        ![
          "appRef",
          "installation",
          "permissions",
          "repositories",
          "repositoryIds",
          "secrets",
          "refreshPolicy",
          "sharing",
        ].includes(k),
    )
    .map((field) => defect("unknown field", { [field]: "x" }, refused(`spec.${field}`, "unknown field"))),
);

const anything = fc.oneof(
  unicode(10),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant([]),
  fc.constant({}),
);

/** Fields drawn independently from valid, hostile and wrong-typed values: any outcome, if clear. */
export const chaosToken: fc.Arbitrary<Case> = fc
  .record(
    {
      appRef: fc.oneof(
        fc.constant({ name: "app" }),
        fc.record({
          kind: fc.constantFrom("GitHubApp", "ClusterGitHubApp", "Bogus"),
          name: fc.oneof(unicode(20), fc.constant("app")),
        }),
        anything,
      ),
      installation: fc.oneof(
        validInstallation,
        oneDefect.map((c) => c.spec.installation),
        anything,
      ),
      permissions: fc.oneof(
        validPermissions,
        fc.dictionary(
          fc.oneof(fc.constantFrom(...permissionNames), unicode(10)),
          fc.constantFrom("read", "write", "admin", "x"),
        ),
        anything,
      ),
      repositories: fc.oneof(
        fc.subarray(["app", "library", "docs"]),
        fc.array(fc.stringMatching(/^[A-Za-z0-9._-]{1,20}$/), { maxLength: 520 }),
        fc.array(unicode(10), { maxLength: 3 }),
        anything,
      ),
      repositoryIds: fc.oneof(fc.array(fc.integer({ min: -5, max: 600 }), { maxLength: 3 }), anything),
      secrets: fc.oneof(
        uniqueTargets(1, 3),
        uniqueTargets(0, 20),
        fc.array(validTarget, { minLength: 2, maxLength: 3 }),
        oneDefect.map((c) => c.spec.secrets),
        anything,
      ),
      refreshPolicy: fc.oneof(
        validRefreshPolicy,
        oneDefect.map((c) => c.spec.refreshPolicy),
        anything,
      ),
      sharing: fc.oneof(fc.constantFrom("Namespace", "None"), anything),
      extra: anything,
    },
    { requiredKeys: [] },
  )
  .map((spec) => ({ label: "chaos", spec, expect: either }));

export const hostileToken: fc.Arbitrary<Case> = fc.oneof(
  { weight: 2, arbitrary: validToken },
  { weight: 4, arbitrary: oneDefect },
  { weight: 2, arbitrary: chaosToken },
);

// ---------------------------------------------------------------------------------------------
// GitHubApp and ClusterGitHubApp

/** A GitHubApp spec plus its key Secret, and what a valid token using it must end with. */
export interface AppCase {
  label: string;
  spec: Record<string, unknown>;
  /** The key Secret's data (plain text values); undefined: no Secret. */
  keyData: Record<string, string> | undefined;
  expect: Expectation;
}

export function hostileApp(simUrl: string, pem: string): fc.Arbitrary<AppCase> {
  const key = { "private-key.pem": pem };
  const app = (
    label: string,
    patch: Record<string, unknown>,
    expect: Expectation,
    keyData: AppCase["keyData"] = key,
  ) => ({
    label,
    spec: { appId: 4242, privateKeySecretRef: { name: "@-key" }, baseUrl: simUrl, ...patch },
    keyData,
    expect,
  });
  const simHostPort = simUrl.replace(/^https?:\/\//, "");
  return fc.oneof(
    fc.constant(app("valid", {}, reason("Issued"))),
    fc.constant(app("clientId only", { appId: undefined, clientId: "Iv23liE2eTest" }, reason("Issued"))),
    fc.constant(app("appId wins over a wrong clientId", { clientId: "Iv23liWrong" }, reason("Issued"))),
    fc.constant(app("trailing slashes", { baseUrl: `${simUrl}///` }, either)),
    fc
      .integer({ min: 1, max: Number.MAX_SAFE_INTEGER })
      .filter((id) => id !== 4242)
      .map((appId) => app("unknown appId", { appId }, reason("JWTRejected"))),
    fc
      .stringMatching(/^[A-Za-z0-9.]{1,64}$/)
      .filter((c) => c !== "Iv23liE2eTest")
      .map((clientId) => app("unknown clientId", { appId: undefined, clientId }, reason("JWTRejected"))),
    fc.constant(
      app("neither appId nor clientId", { appId: undefined }, refused("spec", "set appId or clientId")),
    ),
    fc
      .constantFrom(0, -1, 1.5, "4242", 2 ** 53, true)
      .map((appId) => app("appId out of range or of the wrong type", { appId }, refused("spec.appId"))),
    // kubectl apply drops a null field: no appId and no clientId left.
    fc.constant(app("appId null", { appId: null }, refused("spec", "set appId or clientId"))),
    fc
      .oneof(unicode(10), fc.constantFrom("", "a b", "x".repeat(65), "Iv23li-x", "Iv23li/x"))
      .filter((c) => !/^[A-Za-z0-9.]{1,64}$/.test(c))
      .map((clientId) => app("odd clientId", { clientId }, refused("spec.clientId"))),
    // Keyless signers: one backend only, bounded fields; a namespaced GitHubApp may not sign
    // with the operator's own identity (a cloud KMS, an HSM module it names).
    fc.constant(
      app(
        "key Secret and a signer",
        { signer: { awsKms: { keyId: "alias/platform" } } },
        refused("spec", "set exactly one key source"),
      ),
    ),
    fc.constant(
      app(
        "two signer backends",
        {
          privateKeySecretRef: undefined,
          signer: {
            awsKms: { keyId: "k" },
            azureKeyVault: { vaultUrl: "https://v.vault.azure.net", keyName: "k" },
          },
        },
        refused("spec.signer", "set exactly one of vaultTransit"),
      ),
    ),
    fc
      .constantFrom(
        { awsKms: { keyId: "alias/platform-github-app" } },
        { gcpKms: { keyVersion: "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1" } },
        {
          pkcs11: {
            module: "/usr/lib/x86_64-linux-gnu/libc.so.6",
            slot: 0,
            keyLabel: "k",
            pinSecretRef: { name: "pin" },
          },
        },
      )
      .map((signer) =>
        app(
          "a signer with the operator's identity",
          { privateKeySecretRef: undefined, signer },
          reason("NotPermitted"),
        ),
      ),
    fc
      .constantFrom("ftp://vault:8200", "https://user:pw@vault:8200", "https://vault:8200/\nx", "")
      .map((address) =>
        app(
          "odd Vault address",
          {
            privateKeySecretRef: undefined,
            signer: { vaultTransit: { address, keyName: "k", auth: { tokenSecretRef: { name: "t" } } } },
          },
          refused("spec.signer.vaultTransit.address"),
        ),
      ),
    fc.constant(
      app(
        "no key Secret reference and no signer",
        { privateKeySecretRef: undefined },
        refused("spec", "set exactly one key source"),
      ),
    ),
    fc.constant(
      app(
        "empty key Secret name",
        { privateKeySecretRef: { name: "" } },
        refused("spec.privateKeySecretRef.name"),
      ),
    ),
    fc.constant(
      app(
        "empty key name",
        { privateKeySecretRef: { name: "@-key", key: "" } },
        refused("spec.privateKeySecretRef.key"),
      ),
    ),
    // (A default parameter would turn an explicit undefined back into the key.)
    fc.constant({
      ...app("missing key Secret", {}, reason("PrivateKeyNotFound", "does not exist")),
      keyData: undefined,
    }),
    unicode(20)
      .filter((n) => !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(n))
      .map((name) =>
        app(
          "key Secret name no Secret can have",
          { privateKeySecretRef: { name } },
          refused("spec.privateKeySecretRef.name"),
        ),
      ),
    fc
      .oneof(unicode(20), fc.constantFrom("private-key", "key.pem", "PRIVATE-KEY.PEM", " private-key.pem"))
      .filter((k) => k !== "private-key.pem")
      .map((k) =>
        app(
          "wrong key in the Secret",
          { privateKeySecretRef: { name: "@-key", key: k } },
          reason("PrivateKeyNotFound", "has no key"),
        ),
      ),
    fc
      .constantFrom(
        "ftp://x",
        "127.0.0.1",
        "https://",
        "http://a b",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "",
      )
      .map((baseUrl) => app("odd baseUrl", { baseUrl }, refused("spec.baseUrl"))),
    fc
      .constantFrom("http://127.0.0.1:1", "http://127.0.0.1:9/api/v3", "http://[::1]:1")
      .map((baseUrl) => app("unreachable baseUrl", { baseUrl }, reason("GitHubUnavailable"))),
    fc
      .constantFrom(`${simUrl}?x=1`, `${simUrl}#f`)
      .map((baseUrl) => app("baseUrl with a query or fragment", { baseUrl }, reason("InvalidSpec"))),
    fc
      .constantFrom(`http://user:pass@${simHostPort}`)
      .map((baseUrl) => app("baseUrl with credentials", { baseUrl }, refused("spec.baseUrl"))),
    fc
      .constantFrom(`${simUrl}/api/v3`, `${simUrl}/../..`, `${simUrl}/%2e%2e`)
      .map((baseUrl) => app("baseUrl path", { baseUrl }, either)),
    fc
      .oneof(
        unicode(100),
        fc.constantFrom(
          "garbage",
          `-----BEGIN CERTIFICATE-----\n${randomBytes(300).toString("base64")}\n-----END CERTIFICATE-----\n`,
          "x".repeat(65_536),
        ),
      )
      .map((caBundle) => app("odd caBundle", { caBundle }, reason("InvalidSpec", "CA bundle"))),
    fc.constant(app("caBundle over 64 KiB", { caBundle: "x".repeat(65_537) }, refused("spec.caBundle"))),
    fc
      .constantFrom("https://[", "http://a:99999")
      .map((proxy) => app("proxy that is not a URL", { proxy }, reason("InvalidSpec", "proxy"))),
    fc.constant(app("unreachable proxy", { proxy: "http://127.0.0.1:1" }, reason("GitHubUnavailable"))),
    fc
      .constantFrom("socks5://127.0.0.1:1", "ftp://proxy", "proxy:3128")
      .map((proxy) => app("odd proxy", { proxy }, refused("spec.proxy"))),
    fc.constant(app("unknown field", { bogus: 1 }, refused("spec.bogus", "unknown field"))),
    fc.constant(
      app("spec of the wrong type", { privateKeySecretRef: "app-key" }, refused("spec.privateKeySecretRef")),
    ),
  );
}

export interface ClusterAppCase {
  label: string;
  /** The policy, with "@ns" standing for the token's namespace. */
  policy: unknown;
  token: Record<string, unknown>;
  expect: Expectation;
}

/** ClusterGitHubApp policies (the App itself is valid; its key is in the operator namespace). */
export const hostilePolicy: fc.Arbitrary<ClusterAppCase> = (() => {
  const allow = {
    namespaces: { names: ["@ns"] },
    installations: { owners: ["acme"] },
    repositories: ["acme/*"],
    maxPermissions: { contents: "read", issues: "write" },
  };
  const token = { installation: { owner: "acme" }, permissions: { contents: "read" }, repositories: ["app"] };
  const c = (
    label: string,
    policy: unknown,
    expect: Expectation,
    t: Record<string, unknown> = {},
  ): ClusterAppCase => ({
    label,
    policy,
    token: { ...token, ...t },
    expect,
  });
  const glob = fc
    .array(
      fc.oneof(
        fc.constantFrom("*", "?", ".", "[", "]", "(", ")", "+", "^", "$", "|", "\\", "{", "}"),
        fc.stringMatching(/^[a-z]{1,3}$/),
      ),
      {
        maxLength: 8,
      },
    )
    .map((parts) => parts.join(""))
    .filter((g) => (g.match(/\*/g) ?? []).length <= 3);
  return fc.oneof(
    fc.constant(c("allowed", allow, reason("Issued"))),
    fc.constant(
      c(
        "allowed by label selector",
        { ...allow, namespaces: { selector: { matchLabels: { hostile: "yes" } } } },
        reason("Issued"),
      ),
    ),
    fc.constant(
      c(
        "allowed by expression",
        {
          ...allow,
          namespaces: {
            selector: { matchExpressions: [{ key: "hostile", operator: "In", values: ["yes", "maybe"] }] },
          },
        },
        reason("Issued"),
      ),
    ),
    fc.constant(
      c("owner wildcard and id", { ...allow, installations: { owners: ["*"] } }, reason("Issued"), {
        installation: { id: 9001 },
      }),
    ),
    fc.constant(c("owner in capitals", { ...allow, installations: { owners: ["ACME"] } }, reason("Issued"))),
    fc.constant(
      c("any repository", { ...allow, repositories: ["*/*"] }, reason("Issued"), { repositories: undefined }),
    ),
    fc.constant(c("no policy", {}, reason("NotPermitted", "policy.namespaces"))),
    fc
      .array(fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/), { maxLength: 1000 })
      .map((names) =>
        c(
          "other namespaces",
          { ...allow, namespaces: { names } },
          reason("NotPermitted", "policy.namespaces"),
        ),
      ),
    fc.constant(
      c(
        "selector that does not match",
        {
          ...allow,
          namespaces: { selector: { matchExpressions: [{ key: "hostile", operator: "DoesNotExist" }] } },
        },
        reason("NotPermitted", "policy.namespaces"),
      ),
    ),
    fc
      .array(unicode(39), { maxLength: 20 })
      .filter((owners) => !owners.some((o) => o === "*" || o.toLowerCase() === "acme"))
      .map((owners) =>
        c(
          "other owners",
          { ...allow, installations: { owners } },
          reason("NotPermitted", "policy.installations"),
        ),
      ),
    fc.constant(
      c(
        "id not listed",
        { ...allow, installations: { ids: [1, 2, 3] } },
        reason("NotPermitted", "policy.installations"),
        { installation: { id: 9001 } },
      ),
    ),
    fc.constant(
      c(
        "no ceiling",
        { ...allow, maxPermissions: undefined },
        reason("NotPermitted", "policy.maxPermissions"),
      ),
    ),
    fc.constant(
      c(
        "ceiling too low",
        { ...allow, maxPermissions: { metadata: "read" } },
        reason("NotPermitted", "policy.maxPermissions"),
      ),
    ),
    fc.constant(
      c("token without permissions", allow, reason("NotPermitted", "policy.maxPermissions"), {
        permissions: undefined,
      }),
    ),
    fc.constant(
      c("token without repositories", allow, reason("NotPermitted", "policy.repositories"), {
        repositories: undefined,
      }),
    ),
    fc.constant(
      c("repository ids", allow, reason("NotPermitted", "policy.repositories"), { repositoryIds: [501] }),
    ),
    glob.map((g) => c("odd glob", { ...allow, repositories: [`acme/${g}`] }, either)),
    fc
      .constantFrom("acme/[a]pp", "acme/.*", "acme/(app)", "acme/ap+", "acme/app$", "^acme/app")
      .map((g) =>
        c(
          "regex syntax is literal",
          { ...allow, repositories: [g] },
          reason("NotPermitted", "policy.repositories"),
        ),
      ),
    fc.constant(
      c(
        "1001 namespaces",
        { ...allow, namespaces: { names: Array.from({ length: 1001 }, (_, i) => `n${i}`) } },
        refused("spec.policy.namespaces.names"),
      ),
    ),
    fc.constant(
      c(
        "namespace name over 63",
        { ...allow, namespaces: { names: ["n".repeat(64)] } },
        refused("spec.policy.namespaces.names[0]"),
      ),
    ),
    fc.constant(
      c(
        "owner over 39",
        { ...allow, installations: { owners: ["o".repeat(40)] } },
        refused("spec.policy.installations.owners[0]"),
      ),
    ),
    fc.constant(
      c(
        "glob over 140",
        { ...allow, repositories: ["r".repeat(141)] },
        refused("spec.policy.repositories[0]"),
      ),
    ),
    fc.constant(
      c(
        "unknown ceiling",
        { ...allow, maxPermissions: { everything: "admin" } },
        refused("spec.policy.maxPermissions", "unknown permission name"),
      ),
    ),
    fc.constant(
      c(
        "bad selector operator",
        { ...allow, namespaces: { selector: { matchExpressions: [{ key: "a", operator: "Matches" }] } } },
        refused("spec.policy.namespaces.selector.matchExpressions[0].operator"),
      ),
    ),
    fc.constant(c("policy of the wrong type", ["allow"], refused("spec.policy"))),
    fc.constant(
      c(
        "ids of the wrong type",
        { ...allow, installations: { ids: ["9001"] } },
        refused("spec.policy.installations.ids[0]"),
      ),
    ),
  );
})();

// ---------------------------------------------------------------------------------------------
// Private keys

/** A key Secret value, and whether a missing Secret or key is what is meant. */
export interface KeyShape {
  label: string;
  /** Plain text stored under "private-key.pem"; undefined with `missing`. */
  value?: string | Buffer;
  missing?: "secret" | "key";
}

/** PEM armour built at runtime, so no key-shaped text is committed. */
const armor = (edge: "BEGIN" | "END", label: string) => `-----${edge} ${label}-----`;
const pemOf = (label: string, body: Buffer | string) =>
  `${armor("BEGIN", label)}\n${(typeof body === "string" ? body : body.toString("base64")).match(/.{1,64}/g)?.join("\n") ?? ""}\n${armor("END", label)}\n`;

/** Every malformed shape a key Secret can have; each must end in InvalidPrivateKey or PrivateKeyNotFound. */
export function malformedKeys(goodPem: string): KeyShape[] {
  const rsa1024 = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const ed = generateKeyPairSync("ed25519");
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const passphrase = "hostile";
  const end = goodPem.indexOf("-----END");
  return [
    { label: "no Secret", missing: "secret" },
    { label: "no such key in the Secret", missing: "key" },
    { label: "empty", value: "" },
    { label: "whitespace", value: " \n\t\r\n " },
    { label: "only quotes", value: '""' },
    { label: "truncated before END", value: goodPem.slice(0, end) },
    { label: "truncated in the middle", value: goodPem.slice(0, Math.floor(goodPem.length / 2)) },
    {
      label: "body cut in half",
      value: `${goodPem.slice(0, Math.floor(end / 2))}\n${goodPem.slice(end)}`,
    },
    {
      label: "OpenSSH",
      value: pemOf(
        `OPENSSH ${"PRIVATE"} KEY`,
        Buffer.concat([Buffer.from("openssh-key-v1\0"), randomBytes(400)]),
      ),
    },
    { label: "EC (SEC1)", value: ec.privateKey.export({ type: "sec1", format: "pem" }).toString() },
    { label: "EC (PKCS#8)", value: ec.privateKey.export({ type: "pkcs8", format: "pem" }).toString() },
    { label: "Ed25519", value: ed.privateKey.export({ type: "pkcs8", format: "pem" }).toString() },
    { label: "RSA 1024", value: rsa1024.privateKey.export({ type: "pkcs1", format: "pem" }).toString() },
    { label: "public key (SPKI)", value: rsa.publicKey.export({ type: "spki", format: "pem" }).toString() },
    {
      label: "public key (PKCS#1)",
      value: rsa.publicKey.export({ type: "pkcs1", format: "pem" }).toString(),
    },
    { label: "SSH public key", value: `ssh-ed25519 ${randomBytes(51).toString("base64")} someone@example` },
    {
      label: "encrypted PKCS#8",
      value: rsa.privateKey
        .export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase })
        .toString(),
    },
    {
      label: "encrypted PKCS#1",
      value: rsa.privateKey
        .export({ type: "pkcs1", format: "pem", cipher: "aes-256-cbc", passphrase })
        .toString(),
    },
    { label: "certificate", value: pemOf("CERTIFICATE", randomBytes(600)) },
    { label: "unknown PEM label", value: pemOf("SOMETHING ELSE", randomBytes(300)) },
    {
      label: "PuTTY",
      value: `PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nPrivate-Lines: 1\n${randomBytes(300).toString("base64")}\n`,
    },
    { label: "random bytes", value: randomBytes(2048) },
    { label: "random base64", value: randomBytes(1200).toString("base64") },
    {
      label: "PEM base64-encoded twice",
      value: Buffer.from(Buffer.from(goodPem).toString("base64")).toString("base64"),
    },
    {
      label: "huge garbage (900 KB)",
      value: `${armor("BEGIN", `RSA ${"PRIVATE"} KEY`)}\n${"QUFB\n".repeat(180_000)}${armor("END", `RSA ${"PRIVATE"} KEY`)}\n`,
    },
    { label: "huge text (900 KB)", value: "not a key ".repeat(90_000) },
  ];
}

/** Random damage to a good PEM: truncation anywhere before its END line, or a changed body character. */
export function damagedKey(
  goodPem: string,
): fc.Arbitrary<{ label: string; value: string; bodyChanged: boolean }> {
  const end = goodPem.indexOf("-----END");
  const bodyStart = goodPem.indexOf("\n") + 1;
  return fc.oneof(
    fc
      .integer({ min: 0, max: end + 10 })
      .map((at) => ({ label: `truncated at ${at}`, value: goodPem.slice(0, at), bodyChanged: false })),
    fc
      .tuple(
        fc.integer({ min: bodyStart, max: end - 2 }),
        fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=!-_ "),
      )
      .filter(([at, ch]) => goodPem[at] !== ch && goodPem[at] !== "\n")
      .map(([at, ch]) => ({
        label: `character ${at} changed to ${JSON.stringify(ch)}`,
        value: `${goodPem.slice(0, at)}${ch}${goodPem.slice(at + 1)}`,
        bodyChanged: true,
      })),
    fc.uint8Array({ maxLength: 4096 }).map((bytes) => ({
      label: `${bytes.length} random bytes`,
      value: Buffer.from(bytes).toString("latin1"),
      bodyChanged: false,
    })),
  );
}

// ---------------------------------------------------------------------------------------------
// Hand edits of managed Secrets

export type Edit =
  | { op: "deleteSecret" }
  | { op: "deleteDataKey" }
  | { op: "garbageValue"; value: string }
  | { op: "addDataKey"; key: string; value: string }
  | { op: "removeAnnotation"; key: string }
  | { op: "removeAllAnnotations" }
  | { op: "setAnnotation"; key: string; value: string }
  | { op: "removeLabel"; key: string }
  | { op: "removeAllLabels" }
  | { op: "setLabel"; key: string; value: string }
  | { op: "removeOwnerReferences" }
  | { op: "addOwnerReference" };

const ghatAnnotations = [
  "ghat.dev/expires-at",
  "ghat.dev/refresh-at",
  "ghat.dev/scope-hash",
  "ghat.dev/format",
  "ghat.dev/token-hash",
];
const hour = 3_600_000;
/** Dates for hand-edited expires-at and refresh-at (offsets from now; never beyond ~20 days). */
const odd = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString();

export const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.constant<Edit>({ op: "deleteSecret" }),
  fc.constant<Edit>({ op: "deleteDataKey" }),
  fc
    .oneof(unicode(60), fc.constantFrom("", "ghs_0000000000000000000000000000000000000", "x".repeat(100_000)))
    .map((value): Edit => ({ op: "garbageValue", value })),
  fc
    .tuple(dataKey, unicode(20))
    // A Secret data key is at most 253 characters: the prefix must not push a legal key past it.
    .map(([key, value]): Edit => ({ op: "addDataKey", key: `extra${key}`.slice(0, 253), value })),
  fc.constantFrom(...ghatAnnotations).map((key): Edit => ({ op: "removeAnnotation", key })),
  fc.constant<Edit>({ op: "removeAllAnnotations" }),
  fc
    .oneof(
      fc.tuple(
        fc.constantFrom("ghat.dev/expires-at", "ghat.dev/refresh-at"),
        fc.constantFrom("not a date", "", "1970-01-01T00:00:00Z", "2026-13-45T99:99:99Z"),
      ),
      fc.tuple(
        fc.constantFrom("ghat.dev/expires-at", "ghat.dev/refresh-at"),
        fc.integer({ min: -48, max: 480 }).map((h) => odd(h * hour)),
      ),
      fc.tuple(fc.constant("ghat.dev/format"), fc.constantFrom("netrc", "template", "bogus", "")),
      fc.tuple(
        fc.constantFrom("ghat.dev/token-hash", "ghat.dev/scope-hash"),
        fc.constantFrom("0000000000000000", "", "ünï"),
      ),
    )
    .map(([key, value]): Edit => ({ op: "setAnnotation", key, value })),
  fc
    .constantFrom("ghat.dev/token", "app.kubernetes.io/managed-by")
    .map((key): Edit => ({ op: "removeLabel", key })),
  fc.constant<Edit>({ op: "removeAllLabels" }),
  fc
    .tuple(
      fc.constantFrom("ghat.dev/token", "app.kubernetes.io/managed-by"),
      fc.constantFrom("someone-else", "helm", "ghat"),
    )
    .map(([key, value]): Edit => ({ op: "setLabel", key, value })),
  fc.constant<Edit>({ op: "removeOwnerReferences" }),
  fc.constant<Edit>({ op: "addOwnerReference" }),
);

/** One to three edits; a deleted Secret takes no further edits. */
export const edits: fc.Arbitrary<Edit[]> = fc.array(edit, { minLength: 1, maxLength: 3 }).map((list) => {
  const i = list.findIndex((e) => e.op === "deleteSecret");
  return i < 0 ? list : list.slice(0, i + 1);
});

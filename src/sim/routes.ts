/** The GitHub operations the simulator serves, by GitHub's operation id. */
export const operationIds = [
  "apps/get-authenticated",
  "apps/list-installations",
  "apps/get-installation",
  "apps/get-org-installation",
  "apps/get-user-installation",
  "apps/get-repo-installation",
  "apps/create-installation-access-token",
  "apps/revoke-installation-access-token",
  "apps/list-repos-accessible-to-installation",
] as const;

export type OperationId = (typeof operationIds)[number];

export interface Route {
  op: OperationId;
  /** JWT routes take the App's JWT; token routes an installation token. */
  auth: "jwt" | "token";
  installationId?: number;
  owner?: string;
  repo?: string;
  /** GET /repositories/{id}/installation: where a renamed repository's lookup is redirected. */
  repositoryId?: number;
  documentationUrl: string;
}

const apps = "https://docs.github.com/rest/apps/apps";
const installations = "https://docs.github.com/rest/apps/installations";

type Build = (m: RegExpMatchArray) => Omit<Route, "documentationUrl" | "auth">;
const table: [method: string, pattern: RegExp, build: Build, docs: string][] = [
  ["GET", /^\/app$/, () => ({ op: "apps/get-authenticated" }), `${apps}#get-the-authenticated-app`],
  [
    "GET",
    /^\/app\/installations$/,
    () => ({ op: "apps/list-installations" }),
    `${apps}#list-installations-for-the-authenticated-app`,
  ],
  [
    "GET",
    /^\/app\/installations\/(\d+)$/,
    (m) => ({ op: "apps/get-installation", installationId: Number(m[1]) }),
    `${apps}#get-an-installation-for-the-authenticated-app`,
  ],
  [
    "POST",
    /^\/app\/installations\/(\d+)\/access_tokens$/,
    (m) => ({ op: "apps/create-installation-access-token", installationId: Number(m[1]) }),
    `${apps}#create-an-installation-access-token-for-an-app`,
  ],
  [
    "GET",
    /^\/orgs\/([^/]+)\/installation$/,
    (m) => ({ op: "apps/get-org-installation", owner: decode(m[1]) }),
    `${apps}#get-an-organization-installation-for-the-authenticated-app`,
  ],
  [
    "GET",
    /^\/users\/([^/]+)\/installation$/,
    (m) => ({ op: "apps/get-user-installation", owner: decode(m[1]) }),
    `${apps}#get-a-user-installation-for-the-authenticated-app`,
  ],
  [
    "GET",
    /^\/repos\/([^/]+)\/([^/]+)\/installation$/,
    (m) => ({ op: "apps/get-repo-installation", owner: decode(m[1]), repo: decode(m[2]) }),
    `${apps}#get-a-repository-installation-for-the-authenticated-app`,
  ],
  [
    "GET",
    /^\/repositories\/(\d+)\/installation$/,
    (m) => ({ op: "apps/get-repo-installation", repositoryId: Number(m[1]) }),
    `${apps}#get-a-repository-installation-for-the-authenticated-app`,
  ],
  [
    "DELETE",
    /^\/installation\/token$/,
    () => ({ op: "apps/revoke-installation-access-token" }),
    `${installations}#revoke-an-installation-access-token`,
  ],
  [
    "GET",
    /^\/installation\/repositories$/,
    () => ({ op: "apps/list-repos-accessible-to-installation" }),
    `${installations}#list-repositories-accessible-to-the-app-installation`,
  ],
];

const tokenRoutes: ReadonlySet<OperationId> = new Set([
  "apps/revoke-installation-access-token",
  "apps/list-repos-accessible-to-installation",
]);

/**
 * Maps a request to GitHub's operation id. `path` has no query and no `/api/v3` prefix.
 * Undefined for anything else (GitHub: 404 Not Found).
 */
export function routeOf(method: string, path: string): Route | undefined {
  const p = path.replace(/\/+$/, "") || "/";
  for (const [verb, pattern, build, documentationUrl] of table) {
    const m = method === verb ? p.match(pattern) : null;
    if (!m) continue;
    try {
      const route = build(m);
      return { ...route, auth: tokenRoutes.has(route.op) ? "token" : "jwt", documentationUrl };
    } catch {
      return undefined; // malformed percent-encoding
    }
  }
  return undefined;
}

function decode(s: string | undefined): string {
  return decodeURIComponent(s ?? "");
}

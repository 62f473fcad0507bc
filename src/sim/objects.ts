import type { SimApp, SimInstallation, SimRepository } from "./seed.ts";

/**
 * Response bodies shaped like GitHub's schemas (simple-user, integration, installation,
 * repository); test/sim validates them against GitHub's OpenAPI description.
 */
const created = "2024-01-01T00:00:00Z";

export function simpleUser(login: string, id: number, type: string, web: string, api: string) {
  const u = `${api}/users/${login}`;
  return {
    login,
    id,
    node_id: nodeId("U", id),
    avatar_url: `${web}/avatars/${login}`,
    gravatar_id: "",
    url: u,
    html_url: `${web}/${login}`,
    followers_url: `${u}/followers`,
    following_url: `${u}/following{/other_user}`,
    gists_url: `${u}/gists{/gist_id}`,
    starred_url: `${u}/starred{/owner}{/repo}`,
    subscriptions_url: `${u}/subscriptions`,
    organizations_url: `${u}/orgs`,
    repos_url: `${u}/repos`,
    events_url: `${u}/events{/privacy}`,
    received_events_url: `${u}/received_events`,
    type,
    site_admin: false,
  };
}

/** GET /app: the App; its permissions default to the union of its installations'. */
export function appObject(app: SimApp, installations: SimInstallation[], web: string, api: string) {
  const permissions: Record<string, string> = { ...app.permissions };
  if (!app.permissions) {
    const rank = { read: 1, write: 2, admin: 3 } as const;
    for (const i of installations) {
      for (const [name, level] of Object.entries(i.permissions)) {
        const have = permissions[name] as keyof typeof rank | undefined;
        if (!have || rank[level] > rank[have]) permissions[name] = level;
      }
    }
  }
  return {
    id: app.id,
    slug: app.slug,
    client_id: app.clientId,
    node_id: nodeId("A", app.id),
    owner: simpleUser(app.owner, accountId(app.owner), "Organization", web, api),
    name: app.name ?? app.slug,
    description: null,
    external_url: `${web}/${app.owner}`,
    html_url: `${web}/apps/${app.slug}`,
    created_at: created,
    updated_at: created,
    permissions,
    events: app.events ?? [],
    installations_count: installations.length,
  };
}

export function installationObject(inst: SimInstallation, app: SimApp, web: string, api: string) {
  const id = inst.account.id ?? accountId(inst.account.login);
  return {
    id: inst.id,
    // GitHub's description types this account as anyOf [simple-user, enterprise] on single
    // lookups but allOf [both] on GET /app/installations, so it carries the fields of both.
    account: {
      ...simpleUser(inst.account.login, id, inst.account.type, web, api),
      name: inst.account.login,
      slug: inst.account.login.toLowerCase(),
      created_at: created,
      updated_at: created,
    },
    repository_selection: inst.repositorySelection,
    access_tokens_url: `${api}/app/installations/${inst.id}/access_tokens`,
    repositories_url: `${api}/installation/repositories`,
    html_url:
      inst.account.type === "Organization"
        ? `${web}/organizations/${inst.account.login}/settings/installations/${inst.id}`
        : `${web}/settings/installations/${inst.id}`,
    app_id: inst.appId,
    app_slug: app.slug,
    target_id: id,
    target_type: inst.account.type,
    permissions: inst.permissions,
    events: inst.events ?? [],
    created_at: created,
    updated_at: created,
    single_file_name: null,
    has_multiple_single_files: false,
    single_file_paths: [],
    suspended_by: inst.suspendedAt ? simpleUser("admin", 2, "User", web, api) : null,
    suspended_at: inst.suspendedAt ?? null,
  };
}

export function repositoryObject(repo: SimRepository, web: string, api: string) {
  const full = `${repo.owner}/${repo.name}`;
  const u = `${api}/repos/${full}`;
  const urls = Object.fromEntries(
    (
      [
        ["archive_url", "/{archive_format}{/ref}"],
        ["assignees_url", "/assignees{/user}"],
        ["blobs_url", "/git/blobs{/sha}"],
        ["branches_url", "/branches{/branch}"],
        ["collaborators_url", "/collaborators{/collaborator}"],
        ["comments_url", "/comments{/number}"],
        ["commits_url", "/commits{/sha}"],
        ["compare_url", "/compare/{base}...{head}"],
        ["contents_url", "/contents/{+path}"],
        ["contributors_url", "/contributors"],
        ["deployments_url", "/deployments"],
        ["downloads_url", "/downloads"],
        ["events_url", "/events"],
        ["forks_url", "/forks"],
        ["git_commits_url", "/git/commits{/sha}"],
        ["git_refs_url", "/git/refs{/sha}"],
        ["git_tags_url", "/git/tags{/sha}"],
        ["hooks_url", "/hooks"],
        ["issue_comment_url", "/issues/comments{/number}"],
        ["issue_events_url", "/issues/events{/number}"],
        ["issues_url", "/issues{/number}"],
        ["keys_url", "/keys{/key_id}"],
        ["labels_url", "/labels{/name}"],
        ["languages_url", "/languages"],
        ["merges_url", "/merges"],
        ["milestones_url", "/milestones{/number}"],
        ["notifications_url", "/notifications{?since,all,participating}"],
        ["pulls_url", "/pulls{/number}"],
        ["releases_url", "/releases{/id}"],
        ["stargazers_url", "/stargazers"],
        ["statuses_url", "/statuses/{sha}"],
        ["subscribers_url", "/subscribers"],
        ["subscription_url", "/subscription"],
        ["tags_url", "/tags"],
        ["teams_url", "/teams"],
        ["trees_url", "/git/trees{/sha}"],
      ] as const
    ).map(([k, suffix]) => [k, `${u}${suffix}`]),
  );
  const host = new URL(web).host;
  return {
    id: repo.id,
    node_id: nodeId("R", repo.id),
    name: repo.name,
    full_name: full,
    owner: simpleUser(repo.owner, accountId(repo.owner), "Organization", web, api),
    private: repo.private,
    html_url: `${web}/${full}`,
    description: null,
    fork: false,
    url: u,
    ...urls,
    clone_url: `${web}/${full}.git`,
    git_url: `git://${host}/${full}.git`,
    ssh_url: `git@${host}:${full}.git`,
    svn_url: `${web}/${full}`,
    mirror_url: null,
    homepage: null,
    language: null,
    forks: 0,
    forks_count: 0,
    stargazers_count: 0,
    watchers_count: 0,
    watchers: 0,
    size: 1,
    default_branch: "main",
    open_issues: 0,
    open_issues_count: 0,
    is_template: false,
    topics: [],
    has_issues: true,
    has_projects: false,
    has_wiki: false,
    has_pages: false,
    has_downloads: false,
    archived: false,
    disabled: false,
    visibility: repo.private ? "private" : "public",
    pushed_at: created,
    created_at: created,
    updated_at: created,
    license: null,
  };
}

/** A stable account id for a login (GitHub's ids are per account, not per object). */
function accountId(login: string): number {
  let h = 0;
  for (const c of login.toLowerCase()) h = (h * 31 + (c.codePointAt(0) ?? 0)) % 1_000_000;
  return 100_000 + h;
}

function nodeId(prefix: string, id: number): string {
  return Buffer.from(`${prefix}_${id}`).toString("base64").replace(/=+$/, "");
}

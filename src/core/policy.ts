import type { ClusterAppPolicy, NamespaceSelector } from "../api/githubapp.ts";
import { githubPermissions } from "../api/permissions.generated.ts";

/** The policy field a refusal comes from; also the `policy.<rule>` named in messages. */
export type PolicyRule = "namespaces" | "installations" | "maxPermissions" | "repositories";

export type PolicyResult = { allowed: true } | { allowed: false; rule: PolicyRule; message: string };

export interface PolicyRequest {
  namespace: string;
  /** Labels of the namespace, for selectors. */
  namespaceLabels: Readonly<Record<string, string>>;
  /** The installation as the token names it (before lookup). */
  installation: { id?: number | undefined; owner?: string | undefined; repository?: string | undefined };
  /** The installation's account, looked up when the token names the installation by id. */
  resolvedOwner?: string | undefined;
  /**
   * Permission name to level. Typed wide on purpose: this function does not rely on admission
   * and refuses names GitHub does not define and levels other than read, write and admin.
   */
  permissions: Readonly<Partial<Record<string, string>>> | undefined;
  /** Repository names (without owner) the token asks for. */
  repositories: readonly string[] | undefined;
  repositoryIds: readonly number[] | undefined;
}

/** The closed order of permission levels: read < write < admin. Nothing else is a level. */
const levelOrder: ReadonlyMap<string, number> = new Map([
  ["read", 1],
  ["write", 2],
  ["admin", 3],
]);

/** GitHub adds `metadata: read` to every installation token, asked for or not. */
const implicitGrant = { name: "metadata", level: "read" };

/**
 * May this GitHubAppToken use a ClusterGitHubApp? Safe by default: each rule that is unset
 * allows nothing, and a token that leaves permissions or repositories open ("everything the
 * installation has") is refused unless the policy allows everything too. The checks run in a
 * fixed order and the first refusal names its rule. Safe on its own: names are looked up as
 * own properties only, so `constructor` or `__proto__` never reach Object.prototype, and
 * unknown permission names or levels are refused rather than compared.
 */
export function evaluatePolicy(appName: string, policy: ClusterAppPolicy, req: PolicyRequest): PolicyResult {
  const deny = (rule: PolicyRule, why: string): PolicyResult => ({
    allowed: false,
    rule,
    message: `ClusterGitHubApp "${appName}" does not allow ${why} (policy.${rule})`,
  });

  const ns = policy.namespaces;
  const byName = ns?.names?.includes(req.namespace) ?? false;
  const bySelector = ns?.selector ? selectorMatches(ns.selector, req.namespaceLabels) : false;
  if (!byName && !bySelector) return deny("namespaces", `namespace "${req.namespace}"`);

  const owner = req.installation.owner ?? req.installation.repository?.split("/")[0] ?? req.resolvedOwner;
  if (req.installation.id !== undefined) {
    if (!idAllowed(policy, req.installation.id) && !anyOwner(policy)) {
      return deny("installations", `installation id ${req.installation.id}`);
    }
  } else if (owner === undefined || !ownerAllowed(policy, owner)) {
    return deny("installations", `installations of "${owner ?? "?"}"`);
  }

  const asked = Object.entries(req.permissions ?? {}).filter(
    (e): e is [string, string] => e[1] !== undefined,
  );
  if (asked.length === 0) {
    return deny(
      "maxPermissions",
      "a token without explicit permissions (it would get all of the installation's)",
    );
  }
  for (const [name, level] of asked) {
    const problem = permissionProblem(policy, name, level);
    if (problem !== undefined) return deny("maxPermissions", problem);
  }

  const patterns = policy.repositories ?? [];
  const named = req.repositories ?? [];
  const ids = req.repositoryIds ?? [];
  if (named.length === 0 && ids.length === 0 && !patterns.includes("*/*")) {
    return deny(
      "repositories",
      "a token without explicit repositories (it would get all of the installation's)",
    );
  }
  if (ids.length > 0 && !patterns.includes("*/*")) {
    return deny(
      "repositories",
      "repositoryIds (ids cannot be matched against patterns; name the repositories)",
    );
  }
  const repoOwner = owner ?? "*";
  for (const repo of named) {
    const full = `${repoOwner}/${repo}`;
    if (!repositoryAllowed(policy, full)) return deny("repositories", `repository "${full}"`);
  }
  return { allowed: true };
}

/** What GitHub resolved and granted for a mint, as its answers say. */
export interface Granted {
  /** Login of the installation's account, as GitHub answered; undefined when it did not say. */
  owner: string | undefined;
  installationId: number;
  /**
   * Full names ("owner/repo") of the repositories the token was granted; undefined when the
   * token covers every repository of the installation.
   */
  repositories: readonly string[] | undefined;
  /** Permissions the token was granted, when known. `metadata: read` is always tolerated. */
  permissions?: Readonly<Partial<Record<string, string>>> | undefined;
}

export type GrantResult = { allowed: true } | { allowed: false; rule: PolicyRule; reason: string };

/**
 * Does what GitHub resolved and granted stay inside the policy? evaluatePolicy judges the
 * request before the mint; this judges the answer after it, so an installation named by id
 * or owner that turns out to belong to another account, or a grant wider than asked, is
 * caught before the token is written anywhere. Logins compare case-insensitively, as
 * GitHub's do.
 */
export function grantedWithinPolicy(policy: ClusterAppPolicy, granted: Granted): GrantResult {
  const deny = (rule: PolicyRule, reason: string): GrantResult => ({ allowed: false, rule, reason });
  const owner = granted.owner;

  if (!idAllowed(policy, granted.installationId) && !anyOwner(policy)) {
    if (owner === undefined) {
      return deny(
        "installations",
        `GitHub did not name the account of installation ${granted.installationId}, and policy.installations.ids does not list it`,
      );
    }
    if (!ownerAllowed(policy, owner)) {
      return deny(
        "installations",
        `installation ${granted.installationId} belongs to "${owner}", which policy.installations does not allow`,
      );
    }
  }

  if (granted.repositories === undefined) {
    if (!(policy.repositories ?? []).includes("*/*")) {
      return deny(
        "repositories",
        "GitHub granted every repository of the installation, and policy.repositories does not allow */*",
      );
    }
  } else {
    for (const full of granted.repositories) {
      const [repoOwner, name, ...rest] = full.split("/");
      if (!repoOwner || !name || rest.length > 0) {
        return deny("repositories", `GitHub granted "${full}", which is not an owner/name`);
      }
      if (owner !== undefined && repoOwner.toLowerCase() !== owner.toLowerCase()) {
        return deny(
          "repositories",
          `GitHub granted "${full}", outside the installation's account "${owner}"`,
        );
      }
      if (!repositoryAllowed(policy, full)) {
        return deny(
          "repositories",
          `GitHub granted repository "${full}", which policy.repositories does not allow`,
        );
      }
    }
  }

  for (const [name, level] of Object.entries(granted.permissions ?? {})) {
    if (level === undefined) continue;
    if (name === implicitGrant.name && level === implicitGrant.level) continue;
    const problem = permissionProblem(policy, name, level);
    if (problem !== undefined) return deny("maxPermissions", `GitHub granted ${problem}`);
  }
  return { allowed: true };
}

function idAllowed(policy: ClusterAppPolicy, id: number): boolean {
  return (policy.installations?.ids ?? []).includes(id);
}

function anyOwner(policy: ClusterAppPolicy): boolean {
  return (policy.installations?.owners ?? []).includes("*");
}

function ownerAllowed(policy: ClusterAppPolicy, owner: string): boolean {
  const o = owner.toLowerCase();
  return (policy.installations?.owners ?? []).some((x) => x === "*" || x.toLowerCase() === o);
}

function repositoryAllowed(policy: ClusterAppPolicy, full: string): boolean {
  return (policy.repositories ?? []).some((p) => globMatch(p, full));
}

/** Why `name: level` is outside the ceiling, or undefined when it is inside. */
function permissionProblem(policy: ClusterAppPolicy, name: string, level: string): string | undefined {
  if (!Object.hasOwn(githubPermissions, name)) return `unknown permission "${name}"`;
  const rank = levelOrder.get(level);
  if (rank === undefined) return `${name}: ${level} (levels are read, write and admin)`;
  const ceiling: Readonly<Record<string, string>> = policy.maxPermissions ?? {};
  const max = Object.hasOwn(ceiling, name) ? ceiling[name] : undefined;
  if (max === undefined) return `permission "${name}"`;
  const maxRank = levelOrder.get(max);
  if (maxRank === undefined) return `${name}: ${level} (the ceiling "${max}" is not a level)`;
  if (rank > maxRank) return `${name}: ${level} (at most ${max})`;
  return undefined;
}

/**
 * Case-insensitive glob with `*` (any run of characters except "/") and `?` (one character
 * except "/"). Matched segment by segment without regular expressions, in time linear in
 * pattern × text, so no pattern can make it backtrack for long.
 */
export function globMatch(pattern: string, text: string): boolean {
  const ps = pattern.toLowerCase().split("/");
  const ts = text.toLowerCase().split("/");
  return ps.length === ts.length && ps.every((p, i) => segmentMatch(p, ts[i] ?? ""));
}

/** Wildcard match of one segment: greedy, backtracking only to the last `*`. */
function segmentMatch(p: string, t: string): boolean {
  let pi = 0;
  let ti = 0;
  let star = -1;
  let mark = 0;
  while (ti < t.length) {
    if (pi < p.length && (p[pi] === "?" || p[pi] === t[ti])) {
      pi++;
      ti++;
    } else if (pi < p.length && p[pi] === "*") {
      star = pi++;
      mark = ti;
    } else if (star >= 0) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (p[pi] === "*") pi++;
  return pi === p.length;
}

/** Kubernetes label-selector semantics; an empty selector matches everything. */
export function selectorMatches(
  selector: NamespaceSelector,
  labels: Readonly<Record<string, string>>,
): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, req.key);
    const value = labels[req.key];
    const values = req.values ?? [];
    switch (req.operator) {
      case "In":
        if (!has || value === undefined || !values.includes(value)) return false;
        break;
      case "NotIn":
        if (has && value !== undefined && values.includes(value)) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
    }
  }
  return true;
}

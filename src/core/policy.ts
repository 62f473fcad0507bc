import type { ClusterAppPolicy, NamespaceSelector } from "../api/githubapp.ts";
import { levelRank, type PermissionLevel } from "../api/permissions.ts";

export type PolicyResult = { allowed: true } | { allowed: false; rule: string; message: string };

export interface PolicyRequest {
  namespace: string;
  /** Labels of the namespace, for selectors. */
  namespaceLabels: Record<string, string>;
  /** The installation as the token names it (before lookup). */
  installation: { id?: number | undefined; owner?: string | undefined; repository?: string | undefined };
  /** The installation's account, looked up when the token names the installation by id. */
  resolvedOwner?: string | undefined;
  permissions: Partial<Record<string, PermissionLevel>> | undefined;
  /** Repository names (without owner) the token asks for. */
  repositories: readonly string[] | undefined;
  repositoryIds: readonly number[] | undefined;
}

/**
 * May this GitHubAppToken use a ClusterGitHubApp? Safe by default: each rule that is unset
 * allows nothing, and a token that leaves permissions or repositories open ("everything the
 * installation has") is refused unless the policy allows everything too. The checks run in a
 * fixed order and the first refusal names its rule.
 */
export function evaluatePolicy(appName: string, policy: ClusterAppPolicy, req: PolicyRequest): PolicyResult {
  const deny = (rule: string, why: string): PolicyResult => ({
    allowed: false,
    rule,
    message: `ClusterGitHubApp "${appName}" does not allow ${why} (policy.${rule})`,
  });

  const ns = policy.namespaces;
  const byName = ns?.names?.includes(req.namespace) ?? false;
  const bySelector = ns?.selector ? selectorMatches(ns.selector, req.namespaceLabels) : false;
  if (!byName && !bySelector) return deny("namespaces", `namespace "${req.namespace}"`);

  const owner = req.installation.owner ?? req.installation.repository?.split("/")[0] ?? req.resolvedOwner;
  const inst = policy.installations;
  const ownerAllowed = (o: string) =>
    (inst?.owners ?? []).some((x) => x === "*" || x.toLowerCase() === o.toLowerCase());
  if (req.installation.id !== undefined) {
    if (!(inst?.ids ?? []).includes(req.installation.id) && !(inst?.owners ?? []).includes("*")) {
      return deny("installations", `installation id ${req.installation.id}`);
    }
  } else if (owner === undefined || !ownerAllowed(owner)) {
    return deny("installations", `installations of "${owner ?? "?"}"`);
  }

  const ceiling = policy.maxPermissions;
  if (req.permissions === undefined || Object.keys(req.permissions).length === 0) {
    return deny(
      "maxPermissions",
      "a token without explicit permissions (it would get all of the installation's)",
    );
  }
  for (const [name, level] of Object.entries(req.permissions)) {
    const max = ceiling?.[name];
    if (level === undefined) continue;
    if (max === undefined) return deny("maxPermissions", `permission "${name}"`);
    if (levelRank[level] > levelRank[max])
      return deny("maxPermissions", `${name}: ${level} (at most ${max})`);
  }

  const patterns = policy.repositories ?? [];
  const named = req.repositories ?? [];
  if (named.length === 0 && (req.repositoryIds ?? []).length === 0) {
    if (!patterns.includes("*/*")) {
      return deny(
        "repositories",
        "a token without explicit repositories (it would get all of the installation's)",
      );
    }
  }
  if ((req.repositoryIds ?? []).length > 0 && !patterns.includes("*/*")) {
    return deny(
      "repositories",
      "repositoryIds (ids cannot be matched against patterns; name the repositories)",
    );
  }
  const repoOwner = owner ?? "*";
  for (const repo of named) {
    const full = `${repoOwner}/${repo}`;
    if (!patterns.some((p) => globMatch(p, full))) return deny("repositories", `repository "${full}"`);
  }
  return { allowed: true };
}

/** Case-insensitive glob with `*` (any run of characters except "/") and `?`. */
export function globMatch(pattern: string, text: string): boolean {
  const re = pattern
    .toLowerCase()
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, "[^/]*")
    .replace(/\?/g, "[^/]");
  return new RegExp(`^${re}$`).test(text.toLowerCase());
}

/** Kubernetes label-selector semantics; an empty selector matches everything. */
export function selectorMatches(selector: NamespaceSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
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

import type { ClusterAppPolicy, NamespaceSelector } from "../api/githubapp.ts";

export type PolicyResult = { allowed: true } | { allowed: false; rule: string; message: string };

export interface PolicyRequest {
  namespace: string;
  /** Labels of the namespace, for selectors. */
  namespaceLabels: Record<string, string>;
}

/**
 * May this namespace use a ClusterGitHubApp? Safe by default: with no namespace rule,
 * nothing is allowed.
 */
export function evaluatePolicy(appName: string, policy: ClusterAppPolicy, req: PolicyRequest): PolicyResult {
  const ns = policy.namespaces;
  const byName = ns?.names?.includes(req.namespace) ?? false;
  const bySelector = ns?.selector ? selectorMatches(ns.selector, req.namespaceLabels) : false;
  if (!byName && !bySelector) {
    return {
      allowed: false,
      rule: "namespaces",
      message: `ClusterGitHubApp "${appName}" does not allow namespace "${req.namespace}" (policy.namespaces)`,
    };
  }
  return { allowed: true };
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

import { type GitHubAppToken, refreshPolicyProblems } from "../api/githubapptoken.ts";
import { parseDuration } from "../api/meta.ts";
import { permissionProblems } from "../api/permissions.ts";

/** What the reconciler needs of a spec beyond its shape: problems, and durations parsed once. */
export interface SpecFacts {
  /** Why the spec cannot be acted on, beyond what admission already rejects. */
  problems: string[];
  refreshBeforeMs: number;
  minRemainingMs: number;
}

/**
 * Re-checks what admission checks (a spec stored before a rule existed is still read) and
 * parses the refresh policy once. Durations are 0 when the policy has problems.
 */
export function specFacts(spec: GitHubAppToken["spec"]): SpecFacts {
  const problems = [...permissionProblems(spec.permissions ?? {})];
  const policy = spec.refreshPolicy;
  const policyProblems = refreshPolicyProblems(policy);
  problems.push(...policyProblems.map((p) => `refreshPolicy: ${p}`));
  if (policyProblems.length > 0) return { problems, refreshBeforeMs: 0, minRemainingMs: 0 };
  return {
    problems,
    refreshBeforeMs: parseDuration(policy.refreshBefore),
    minRemainingMs: parseDuration(policy.minRemainingLifetime),
  };
}

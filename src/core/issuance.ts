/** Pure decisions of the mint path (src/controller/issue.ts does the I/O). */
import { rfc3339 } from "./time.ts";

/** The tokens a new mint replaces: those the plan found, and the one the Secrets lost. */
export function supersededBy(planned: readonly string[], lost: string | undefined): string[] {
  return lost !== undefined && !planned.includes(lost) ? [...planned, lost] : [...planned];
}

/**
 * Whether a token a sharer minted may be handed over: this GitHubAppToken would not have to
 * refresh it yet (`refreshAt` is its own refresh time for that token), and it is not one
 * being replaced.
 */
export function reusable(
  refreshAt: number,
  now: number,
  candidate: string,
  superseded: readonly string[],
): boolean {
  return refreshAt > now && !superseded.includes(candidate);
}

/**
 * The budgets a mint is counted in (src/core/limits.ts). App and installation budgets are
 * per namespace: a tenant that spends its own is held back, and no other tenant of the App.
 */
export function mintKeys(
  key: string,
  namespace: string,
  appCacheKey: string,
  installation: number | string,
): { token: string; app: string; installation: string } {
  return {
    token: key,
    app: `${namespace}|${appCacheKey}`,
    installation: `${namespace}|${appCacheKey}#${installation}`,
  };
}

/**
 * Why a token that just arrived cannot be used (it already has less than the minimum
 * remaining lifetime), or undefined. Minting again would get the same short token: a loop.
 */
export function tooShort(expiresAt: number, now: number, minRemainingMs: number): string | undefined {
  if (expiresAt - now >= minRemainingMs) return undefined;
  return `GitHub issued a token that expires at ${rfc3339(expiresAt)}, already within refreshPolicy.minRemainingLifetime (${Math.round(minRemainingMs / 1000)}s); lower minRemainingLifetime below the lifetime the server gives`;
}

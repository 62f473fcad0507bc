import { createHash } from "node:crypto";
import type { GitHubAppTokenSpec } from "../api/githubapptoken.ts";

/**
 * What a token may do, as asked for in the spec. Two tokens with the same scope are
 * interchangeable; a Secret whose scope hash differs from the spec's must be re-minted.
 * Built from the spec alone (not from GitHub's answers) so a restart can compare it
 * without calling GitHub.
 */
export interface TokenScope {
  app: { kind: string; name: string; namespace: string | undefined; issuer: string; baseUrl: string };
  installation: { id?: number; owner?: string; repository?: string };
  permissions: [string, string][];
  repositories: string[];
  repositoryIds: number[];
}

export function tokenScope(
  spec: GitHubAppTokenSpec,
  app: { namespace: string | undefined; issuer: string; baseUrl: string },
): TokenScope {
  const inst = spec.installation;
  return {
    app: {
      kind: spec.appRef.kind,
      name: spec.appRef.name,
      namespace: app.namespace,
      issuer: app.issuer,
      baseUrl: app.baseUrl,
    },
    installation: {
      ...(inst.id === undefined ? {} : { id: inst.id }),
      ...(inst.owner === undefined ? {} : { owner: inst.owner.toLowerCase() }),
      ...(inst.repository === undefined ? {} : { repository: inst.repository.toLowerCase() }),
    },
    permissions: Object.entries(spec.permissions ?? {})
      .map(([name, level]): [string, string] => [name, level])
      // Code-unit order, not localeCompare: the same on every machine, and no ICU data paged in.
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    repositories: [...new Set((spec.repositories ?? []).map((r) => r.toLowerCase()))].sort(),
    repositoryIds: [...new Set(spec.repositoryIds ?? [])].sort((a, b) => a - b),
  };
}

/** A short, stable hash of a scope: written on each Secret as ghat.dev/scope-hash. */
export function scopeHash(scope: TokenScope): string {
  return createHash("sha256").update(JSON.stringify(scope)).digest("hex").slice(0, 16);
}

import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { ErrorCode } from "../core/errors.ts";
import { webHost } from "../core/outputs.ts";
import type { Observed, ObservedSecret } from "../core/plan.ts";
import { scopeHash, tokenScope } from "../core/scope.ts";
import type { SpecFacts } from "../core/spec.ts";
import { finalizer } from "../kube/kube.ts";
import type { AppResolution, ResolvedApp } from "./apps.ts";
import type { ObservedSecretRaw, TokenSource } from "./ports.ts";

/**
 * Everything the plan needs about one GitHubAppToken, read from the caches (the Secrets'
 * data may take a GET): its Secrets decoded, the scope it asks for, how to render outputs.
 *
 * `assumeAbsent` (a key's first pass in this process): a Secret the managed cache does not
 * have is taken to be absent without a GET, and listed in `unverified` so that it is written
 * create-only. Every Secret ghat writes carries the managed label, so after the cache's first
 * list the only Secrets it misses are new names and foreign Secrets; a foreign one makes the
 * create fail (409) and the pass is run again with reads (Reconciler). Later passes read on a
 * miss, since the cache may not have seen ghat's own write yet.
 */
export async function gather(
  source: TokenSource,
  token: GitHubAppToken,
  app: ResolvedApp | undefined,
  appProblem: { code: ErrorCode; message: string } | undefined,
  facts: SpecFacts,
  now: number,
  assumeAbsent = false,
): Promise<Observed> {
  const ns = token.metadata.namespace ?? "";
  const secrets = new Map<string, ObservedSecret>();
  const unverified = new Set<string>();
  const deleting = token.metadata.deletionTimestamp !== undefined;
  for (const target of token.spec.secrets) {
    if (assumeAbsent && !deleting && source.cached && !source.cached(ns, target.name)) {
      unverified.add(target.name);
      continue;
    }
    const s = await source.secret(ns, target.name);
    if (s) secrets.set(target.name, decodeSecret(s, token.metadata.uid ?? ""));
  }
  const baseUrl = app?.spec.baseUrl ?? "https://api.github.com";
  const inst = token.spec.installation;
  return {
    now,
    tokenName: token.metadata.name,
    deleting,
    hasFinalizer: token.metadata.finalizers?.includes(finalizer) ?? false,
    specProblems: facts.problems,
    appProblem,
    targets: token.spec.secrets,
    secrets,
    ...(unverified.size > 0 ? { unverified } : {}),
    scopeHash: scopeHash(
      tokenScope(token.spec, { namespace: app?.namespace, issuer: app?.issuer ?? "", baseUrl }),
    ),
    minRemainingMs: facts.minRemainingMs,
    render: {
      host: webHost(baseUrl),
      owner: inst.owner ?? inst.repository?.split("/")[0] ?? token.status?.owner,
      repositories: token.spec.repositories ?? [],
      tokenName: token.metadata.name,
      apiUrl: baseUrl,
      ...(app?.spec.caBundle ? { caBundle: app.spec.caBundle } : {}),
    },
  };
}

export function decodeSecret(s: ObservedSecretRaw, ownerUid: string): ObservedSecret {
  return {
    resourceVersion: s.metadata?.resourceVersion,
    name: s.metadata?.name ?? "",
    type: s.type ?? "Opaque",
    labels: s.metadata?.labels ?? {},
    annotations: s.metadata?.annotations ?? {},
    data: Object.fromEntries(
      Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]),
    ),
    ownedByToken: ownerUid !== "" && (s.metadata?.ownerReferences ?? []).some((r) => r.uid === ownerUid),
  };
}

/** What a reconcile's outcome depends on, as one string: equal inputs, equal outcome. */
export function inputsOf(token: GitHubAppToken, resolution: AppResolution, observed: Observed): string {
  const app = resolution.ok
    ? `${resolution.app.cacheKey}|${resolution.app.keyId}`
    : `${resolution.code}|${resolution.message}`;
  const secrets = [...observed.secrets.values()].map((s) => `${s.name}@${s.resourceVersion ?? ""}`).join(",");
  return `${token.metadata.generation ?? ""}|${app}|${secrets}`;
}

import type { Clock } from "../clock.ts";
import type { AppCredentials, GitHubClient, Installation } from "./client.ts";

export type InstallationRef = {
  id?: number | undefined;
  owner?: string | undefined;
  repository?: string | undefined;
};

export interface InstallationResolverOptions {
  clock: Clock;
  /** How long a lookup is trusted (default 1 h). */
  ttlMs?: number;
}

/**
 * Finds installations by id, owner or repository, caches them per App, and forgets one when
 * a mint answers 404 so the next attempt looks it up again. Concurrent identical lookups
 * share one request.
 */
export class InstallationResolver {
  readonly #o: InstallationResolverOptions;
  readonly #cache = new Map<string, { installation: Installation; at: number }>();
  readonly #inflight = new Map<string, Promise<Installation>>();

  constructor(options: InstallationResolverOptions) {
    this.#o = options;
  }

  async resolve(
    client: GitHubClient,
    app: AppCredentials,
    appKey: string,
    ref: InstallationRef,
  ): Promise<Installation> {
    const key = cacheKey(appKey, ref);
    const hit = this.#cache.get(key);
    if (hit && this.#o.clock.now() - hit.at < (this.#o.ttlMs ?? 3_600_000)) return hit.installation;
    const pending = this.#inflight.get(key);
    if (pending) return pending;
    const lookup = (async () => {
      try {
        const installation =
          ref.id !== undefined
            ? await client.getInstallation(app, ref.id)
            : ref.owner !== undefined
              ? await client.findInstallationByOwner(app, ref.owner)
              : await client.findInstallationByRepository(app, ref.repository ?? "");
        this.#cache.set(key, { installation, at: this.#o.clock.now() });
        return installation;
      } finally {
        this.#inflight.delete(key);
      }
    })();
    this.#inflight.set(key, lookup);
    return lookup;
  }

  invalidate(appKey: string, ref: InstallationRef): void {
    this.#cache.delete(cacheKey(appKey, ref));
  }
}

function cacheKey(appKey: string, ref: InstallationRef): string {
  if (ref.id !== undefined) return `${appKey}#id:${ref.id}`;
  if (ref.owner !== undefined) return `${appKey}#owner:${ref.owner.toLowerCase()}`;
  return `${appKey}#repo:${(ref.repository ?? "").toLowerCase()}`;
}

import type { Clock } from "../clock.ts";
import type { GitHubClient } from "./client.ts";
import type { AppCredentials, Installation, InstallationRef } from "./types.ts";

export interface InstallationResolverOptions {
  client: Pick<GitHubClient, "getInstallation" | "findInstallationByOwner" | "findInstallationByRepository">;
  clock: Clock;
  /** How long an owner or repository lookup is trusted; default 1 h. */
  ttlMs?: number | undefined;
}

export interface InstallationResolver {
  /** The installation id for a reference (see `installation`). */
  resolve(app: AppCredentials, appKey: string, ref: InstallationRef): Promise<number>;
  /**
   * The installation a reference names. By id: verified to exist (for this App) on first use,
   * then cached until invalidated. By owner or repository: looked up and cached for `ttlMs`.
   * Concurrent identical lookups share one request; failures are not cached.
   */
  installation(app: AppCredentials, appKey: string, ref: InstallationRef): Promise<Installation>;
  /**
   * Forgets a reference, e.g. after a mint answered 404 (the App was uninstalled, or
   * re-installed under a new id): the next resolve looks it up again. A lookup in flight
   * at that moment is not cached either.
   */
  invalidate(appKey: string, ref: InstallationRef): void;
}

export const defaultInstallationTtlMs = 3_600_000;

interface Pending {
  promise: Promise<Installation>;
}

/**
 * Installation lookup for one GitHub endpoint (one client). `appKey` identifies the App
 * (kind/namespace/name/issuer/URL): installations are looked up as that App, so two Apps
 * never share an entry.
 */
export function createInstallationResolver(options: InstallationResolverOptions): InstallationResolver {
  const { client, clock } = options;
  const ttlMs = options.ttlMs ?? defaultInstallationTtlMs;
  const cache = new Map<string, { installation: Installation; expiresAt: number }>();
  const inflight = new Map<string, Pending>();

  function lookup(app: AppCredentials, ref: InstallationRef): Promise<Installation> {
    if ("id" in ref) return client.getInstallation(app, ref.id);
    if ("owner" in ref) return client.findInstallationByOwner(app, ref.owner);
    return client.findInstallationByRepository(app, ref.repository);
  }

  async function installation(app: AppCredentials, appKey: string, ref: InstallationRef) {
    const key = cacheKey(appKey, ref);
    const hit = cache.get(key);
    if (hit && clock.now() < hit.expiresAt) return hit.installation;
    const running = inflight.get(key);
    if (running) return running.promise;

    const pending: Pending = {
      promise: lookup(app, ref)
        .then((found) => {
          // Only if nobody invalidated the reference while the lookup ran.
          if (inflight.get(key) === pending) {
            cache.set(key, {
              installation: found,
              expiresAt: "id" in ref ? Number.POSITIVE_INFINITY : clock.now() + ttlMs,
            });
          }
          return found;
        })
        .finally(() => {
          if (inflight.get(key) === pending) inflight.delete(key);
        }),
    };
    inflight.set(key, pending);
    return pending.promise;
  }

  return {
    installation,
    async resolve(app, appKey, ref) {
      return (await installation(app, appKey, ref)).id;
    },
    invalidate(appKey, ref) {
      const key = cacheKey(appKey, ref);
      cache.delete(key);
      inflight.delete(key);
    },
  };
}

/** Logins and repository names are case-insensitive on GitHub. */
function cacheKey(appKey: string, ref: InstallationRef): string {
  if ("id" in ref) return `${appKey}\u0000id:${ref.id}`;
  if ("owner" in ref) return `${appKey}\u0000owner:${ref.owner.toLowerCase()}`;
  return `${appKey}\u0000repository:${ref.repository.toLowerCase()}`;
}

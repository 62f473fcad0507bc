import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { Clock } from "../clock.ts";
import type { ResolvedApp } from "../controller/apps.ts";
import type { GitHubGateway, Minted } from "../controller/reconciler.ts";
import { GhatError } from "../core/errors.ts";
import type { Logger } from "../log.ts";
import { type AppCredentials, GitHubClient, type GitHubClientOptions } from "./client.ts";
import { InstallationResolver } from "./installations.ts";

export interface GatewayOptions {
  clock: Clock;
  log: Logger;
  timeoutMs: number;
  userAgent?: string;
  onRequest?: GitHubClientOptions["onRequest"];
  onRateLimit?: GitHubClientOptions["onRateLimit"];
}

export interface Gateway extends GitHubGateway {
  installationOwner(app: ResolvedApp, installationId: number): Promise<string>;
}

/**
 * What the reconciler asks of GitHub, on top of GitHubClient: one client per endpoint
 * (base URL, CA bundle, proxy), installation lookup with its cache, and one re-lookup when a
 * mint answers 404 (an installation deleted and re-created under another id).
 */
export function createGateway(options: GatewayOptions): Gateway {
  const clients = new Map<string, GitHubClient>();
  const resolver = new InstallationResolver({ clock: options.clock });
  const clientFor = (spec: {
    baseUrl: string;
    caBundle?: string | undefined;
    proxy?: string | undefined;
  }) => {
    const key = JSON.stringify([spec.baseUrl, spec.caBundle ?? "", spec.proxy ?? ""]);
    let client = clients.get(key);
    if (!client) {
      client = new GitHubClient({
        baseUrl: spec.baseUrl,
        caBundle: spec.caBundle,
        proxy: spec.proxy,
        clock: options.clock,
        timeoutMs: options.timeoutMs,
        userAgent: options.userAgent ?? "ghat/0.1",
        ...(options.onRequest ? { onRequest: options.onRequest } : {}),
        ...(options.onRateLimit ? { onRateLimit: options.onRateLimit } : {}),
      });
      clients.set(key, client);
    }
    return client;
  };
  const credentials = (app: ResolvedApp): AppCredentials => ({
    appId: app.spec.appId,
    clientId: app.spec.clientId,
    key: app.key,
  });

  return {
    async mint(app: ResolvedApp, token: GitHubAppToken): Promise<Minted> {
      const client = clientFor(app.spec);
      const creds = credentials(app);
      const ref = token.spec.installation;
      for (let attempt = 0; ; attempt++) {
        const installation = await resolver.resolve(client, creds, app.cacheKey, ref);
        // No check of a cached suspended_at here: GitHub's 403 is the truth, and it changes.
        try {
          const minted = await client.mintToken(creds, installation.id, {
            permissions: token.spec.permissions as Record<string, string> | undefined,
            repositories: token.spec.repositories,
            repositoryIds: token.spec.repositoryIds,
          });
          return {
            token: minted.token,
            expiresAt: minted.expiresAt,
            installationId: installation.id,
            owner: installation.account.login || undefined,
            permissions: minted.permissions,
            repositorySelection: minted.repositorySelection,
            repositories: minted.repositories?.map((r) => r.fullName),
          };
        } catch (err) {
          if (err instanceof GhatError && err.code === "InstallationNotFound") {
            resolver.invalidate(app.cacheKey, ref);
            if (attempt === 0 && ref.id === undefined) continue;
          }
          throw err;
        }
      }
    },
    async revoke(app, tokenValue, installationId) {
      await clientFor("spec" in app ? app.spec : app).revokeToken(tokenValue, installationId);
    },
    async installationOwner(app, installationId) {
      const installation = await resolver.resolve(clientFor(app.spec), credentials(app), app.cacheKey, {
        id: installationId,
      });
      return installation.account.login;
    },
  };
}

import type { GitHubAppToken } from "../api/githubapptoken.ts";
import type { Clock } from "../clock.ts";
import type { Endpoint, ResolvedApp } from "../controller/apps.ts";
import type { GitHubGateway, Minted } from "../controller/ports.ts";
import { GhatError } from "../core/errors.ts";
import type { Logger } from "../log.ts";
import { createGitHubClient, type GitHubClient, type GitHubClientOptions } from "./client.ts";
import { createInstallationResolver, type InstallationResolver } from "./installations.ts";
import type { AppCredentials, GitHubAppInfo, InstallationRef } from "./types.ts";

export interface GatewayOptions {
  clock: Clock;
  log: Logger;
  timeoutMs: number;
  /** How long a signed App JWT is reused (client.ts). */
  jwtReuseMs?: number | undefined;
  secondaryWaitMs?: number | undefined;
  /** Shortest token lifetime accepted from a server (see client.ts `acceptedExpiry`). */
  minTokenLifetimeMs?: number | undefined;
  userAgent?: string;
  onRequest?: GitHubClientOptions["onRequest"];
  onRateLimit?: GitHubClientOptions["onRateLimit"];
}

export interface Gateway extends GitHubGateway {
  installationOwner(app: ResolvedApp, installationId: number): Promise<string>;
  /** `GET /app`: GitHub accepts the App's JWT; the App's id, slug and name. */
  getApp(app: ResolvedApp): Promise<GitHubAppInfo>;
}

/**
 * What the reconciler asks of GitHub, on top of the client: one client and one installation
 * resolver per endpoint (base URL, CA bundle, proxy), and one re-lookup when a mint answers
 * 404 for an installation named by owner or repository (deleted and re-created under
 * another id).
 */
export function createGateway(options: GatewayOptions): Gateway {
  const endpoints = new Map<string, { client: GitHubClient; resolver: InstallationResolver }>();
  const endpointFor = (spec: Endpoint) => {
    const key = JSON.stringify([spec.baseUrl, spec.caBundle ?? "", spec.proxy ?? ""]);
    let endpoint = endpoints.get(key);
    if (!endpoint) {
      const client = createGitHubClient({
        baseUrl: spec.baseUrl,
        caBundle: spec.caBundle,
        proxy: spec.proxy,
        clock: options.clock,
        timeoutMs: options.timeoutMs,
        jwtReuseMs: options.jwtReuseMs,
        secondaryWaitMs: options.secondaryWaitMs,
        minTokenLifetimeMs: options.minTokenLifetimeMs,
        userAgent: options.userAgent,
        onRequest: options.onRequest,
        onRateLimit: options.onRateLimit,
      });
      endpoint = { client, resolver: createInstallationResolver({ client, clock: options.clock }) };
      endpoints.set(key, endpoint);
    }
    return endpoint;
  };
  const credentials = (app: ResolvedApp): AppCredentials => ({
    appId: app.spec.appId,
    clientId: app.spec.clientId,
    key: app.key,
  });

  return {
    async mint(app: ResolvedApp, token: GitHubAppToken): Promise<Minted> {
      const { client, resolver } = endpointFor(app.spec);
      const creds = credentials(app);
      const ref = installationRef(token.spec.installation);
      for (let attempt = 0; ; attempt++) {
        const installation = await resolver.installation(creds, app.cacheKey, ref);
        // No check of a cached suspended_at here: GitHub's 403 is the truth, and it changes.
        try {
          const minted = await client.mintToken(creds, installation.id, {
            permissions: token.spec.permissions,
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
            if (attempt === 0 && !("id" in ref)) continue;
          }
          throw err;
        }
      }
    },
    async revoke(app, tokenValue, installationId) {
      await endpointFor("spec" in app ? app.spec : app).client.revokeToken(tokenValue, installationId);
    },
    async getApp(app) {
      return endpointFor(app.spec).client.getApp(credentials(app));
    },
    async installationOwner(app, installationId) {
      const { resolver } = endpointFor(app.spec);
      return (await resolver.installation(credentials(app), app.cacheKey, { id: installationId })).account
        .login;
    },
  };
}

/** The spec's `installation` (exactly one of id, owner, repository; the CRD enforces it). */
function installationRef(spec: {
  id?: number | undefined;
  owner?: string | undefined;
  repository?: string | undefined;
}): InstallationRef {
  if (spec.id !== undefined) return { id: spec.id };
  if (spec.owner !== undefined) return { owner: spec.owner };
  if (spec.repository !== undefined) return { repository: spec.repository };
  throw new GhatError("InvalidSpec", "spec.installation must set one of id, owner or repository");
}

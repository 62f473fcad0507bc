import type { IncomingHttpHeaders } from "node:http";
import type { SimContext } from "./context.ts";
import { applyFault } from "./faultreply.ts";
import { checkAppJwt } from "./jwtcheck.ts";
import { docsUrl, errorBody, messages } from "./messages.ts";
import { mintToken } from "./mint.ts";
import { appObject, installationObject, repositoryObject } from "./objects.ts";
import { linkHeader, pageOf, pageSlice } from "./paging.ts";
import { answer, type Concerned, type Reply } from "./reply.ts";
import { type Route, routeOf } from "./routes.ts";
import type { SimApp, SimInstallation } from "./seed.ts";
import { isoSeconds } from "./state.ts";
import type { TokenFormat } from "./tokens.ts";

export interface GitHubRequest {
  method: string;
  /** Path without the `/api/v3` prefix and without the query. */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request to GitHub's API: route, faults, authentication, then the operation. */
export async function answerGitHub(
  ctx: SimContext,
  req: GitHubRequest,
): Promise<{ reply: Reply; concerned: Concerned }> {
  const route = routeOf(req.method, req.path);
  if (!route)
    return { reply: answer(404, errorBody(404, messages.notFound)), concerned: { route: "unknown" } };
  const concerned: Concerned = { route: route.op, installationId: route.installationId };
  const token = route.auth === "token" ? tokenOf(req.headers) : undefined;
  const issued = token ? ctx.state.tokens.get(token) : undefined;
  if (issued) Object.assign(concerned, { appId: issued.appId, installationId: issued.installationId });

  const faults = ctx.faults.take(route.op);
  if (faults.latencyMs > 0)
    await new Promise<void>((resolve) => ctx.clock.setTimer(faults.latencyMs, resolve));
  if (faults.terminal) {
    return { reply: applyFault(faults.terminal, route, concerned.installationId, ctx.now()), concerned };
  }

  if (route.auth === "token") return { reply: tokenRoute(ctx, route, req, token), concerned };

  const jwt = checkAppJwt(req.headers.authorization, {
    findApp: (iss) =>
      ctx.settings.clientIdIssuer || typeof iss === "number" || /^\d+$/.test(iss)
        ? ctx.state.findApp(iss)
        : undefined,
    nowSeconds: Math.floor(ctx.now() / 1000),
    iatLeewaySeconds: ctx.settings.iatLeewaySeconds,
  });
  if (!jwt.ok) return { reply: answer(jwt.status, errorBody(jwt.status, jwt.message, docsUrl)), concerned };
  concerned.appId = jwt.app.id;
  const lag = faults.replicationLag;
  const reply = appRoute(
    ctx,
    route,
    req,
    jwt.app,
    concerned,
    lag && { ms: lag.ms, status: lag.status ?? 401 },
  );
  return { reply, concerned };
}

/** `Authorization: token …` or `Bearer …`. */
function tokenOf(headers: IncomingHttpHeaders): string | undefined {
  return headers.authorization?.match(/^(?:token|bearer)\s+(\S+)\s*$/i)?.[1];
}

function notFound(route: Route): Reply {
  return answer(404, errorBody(404, messages.notFound, route.documentationUrl));
}

/** Routes authenticated by an installation token; they spend the installation's rate limit. */
function tokenRoute(ctx: SimContext, route: Route, req: GitHubRequest, token: string | undefined): Reply {
  const now = ctx.now();
  const problem = ctx.state.tokenProblem(token, now);
  const issued = token ? ctx.state.tokens.get(token) : undefined;
  if (problem || !issued) {
    const status = problem?.status ?? 401;
    const message =
      status === 401
        ? messages.badCredentials
        : problem?.reason === "installation suspended"
          ? messages.suspended
          : messages.notAccessible;
    return answer(status, errorBody(status, message, docsUrl));
  }
  const limit = ctx.rateLimiter.consume(issued.installationId, now);
  if (limit.exceeded) {
    const body = errorBody(403, messages.primaryRateLimit(issued.installationId), route.documentationUrl);
    return answer(403, body, limit.headers);
  }
  if (route.op === "apps/revoke-installation-access-token") {
    ctx.state.revokeToken(issued.token);
    return answer(204, undefined, limit.headers);
  }
  const { web, api } = ctx.urls();
  const repositories = ctx.state.repositoriesOf(issued);
  const page = pageOf(req.query);
  const inst = ctx.state.installations.get(issued.installationId);
  return answer(
    200,
    {
      total_count: repositories.length,
      repository_selection: issued.repositoryIds ? "selected" : (inst?.repositorySelection ?? "all"),
      repositories: pageSlice(repositories, page).map((r) => repositoryObject(r, web, api)),
    },
    { ...limit.headers, ...linkHeader(`${api}${req.path}`, req.query, page, repositories.length) },
  );
}

/** Routes authenticated by the App's JWT; no rate-limit headers. */
function appRoute(
  ctx: SimContext,
  route: Route,
  req: GitHubRequest,
  app: SimApp,
  concerned: Concerned,
  lag: { ms: number; status: 401 | 403 } | undefined,
): Reply {
  const { web, api } = ctx.urls();
  const state = ctx.state;
  const mine = [...state.installations.values()]
    .filter((i) => i.appId === app.id)
    .sort((a, b) => a.id - b.id);
  const found = (inst: SimInstallation | undefined): Reply => {
    if (!inst) return notFound(route);
    concerned.installationId = inst.id;
    return answer(200, installationObject(inst, app, web, api));
  };

  switch (route.op) {
    case "apps/get-authenticated":
      return answer(200, appObject(app, mine, web, api));
    case "apps/list-installations": {
      const page = pageOf(req.query);
      return answer(
        200,
        pageSlice(mine, page).map((i) => installationObject(i, app, web, api)),
        linkHeader(`${api}${req.path}`, req.query, page, mine.length),
      );
    }
    case "apps/get-installation":
      return found(mine.find((i) => i.id === route.installationId));
    case "apps/get-org-installation":
    case "apps/get-user-installation": {
      const login = (route.owner ?? "").toLowerCase();
      // GET /users/{username}/installation works for organizations too.
      const orgsOnly = route.op === "apps/get-org-installation";
      return found(
        mine.find(
          (i) => i.account.login.toLowerCase() === login && (!orgsOnly || i.account.type === "Organization"),
        ),
      );
    }
    case "apps/get-repo-installation": {
      if (route.repositoryId === undefined) {
        const renamed = state.findRepository(route.owner ?? "", route.repo ?? "")
          ? undefined
          : state.findRenamedRepository(route.owner ?? "", route.repo ?? "");
        if (renamed) {
          const location = `${api}/repositories/${renamed.id}/installation`;
          return answer(
            301,
            { ...errorBody(301, messages.movedPermanently, route.documentationUrl), url: location },
            { location },
          );
        }
      }
      const repo =
        route.repositoryId === undefined
          ? state.findRepository(route.owner ?? "", route.repo ?? "")
          : state.repositories.get(route.repositoryId);
      return found(repo && mine.find((i) => state.covered(i).includes(repo)));
    }
    case "apps/create-installation-access-token": {
      const outcome = mintToken(state, ctx.tokens, {
        app,
        installationId: route.installationId ?? 0,
        rawBody: req.body,
        now: ctx.now(),
        lifetimeSeconds: ctx.settings.tokenLifetimeSeconds,
        format: tokenFormat(ctx, req.headers),
        lag,
      });
      if (!outcome.ok)
        return answer(outcome.status, errorBody(outcome.status, outcome.message, route.documentationUrl));
      const t = outcome.token;
      return answer(201, {
        token: t.token,
        expires_at: isoSeconds(t.expiresAt),
        permissions: t.permissions,
        repository_selection: outcome.repositories ? "selected" : outcome.installation.repositorySelection,
        ...(outcome.repositories
          ? { repositories: outcome.repositories.map((r) => repositoryObject(r, web, api)) }
          : {}),
      });
    }
    default:
      return notFound(route);
  }
}

/** The simulator's default, unless `X-GitHub-Stateless-S2S-Token` forces one; never stateless on GHES. */
function tokenFormat(ctx: SimContext, headers: IncomingHttpHeaders): TokenFormat {
  if (ctx.settings.enterprise) return "classic";
  const forced = String(headers["x-github-stateless-s2s-token"] ?? "")
    .trim()
    .toLowerCase();
  if (forced === "enabled") return "stateless";
  if (forced === "disabled") return "classic";
  return ctx.settings.tokenFormat;
}

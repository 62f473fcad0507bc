import { z } from "zod";
import type { SimContext } from "./context.ts";
import { faultRuleSchema } from "./faults.ts";
import { answer, type Reply } from "./reply.ts";
import type { TokenScope } from "./state.ts";

export interface AdminRequest {
  method: string;
  path: string;
  body: string;
}

const checkTokenBody = z.object({ token: z.string(), repository: z.string().optional() });
const clockBody = z.object({ offsetMs: z.number().finite() });
const keyBody = z.object({ publicKey: z.string() });
const keysBody = z.object({ publicKeys: z.array(z.string()).min(1) });
const renameBody = z.object({ name: z.string().min(1) });
const tokenBody = z.object({ token: z.string() });

/** Tokens that GitHub would accept now, with their scope (never the token itself). */
export function liveTokens(ctx: SimContext): TokenScope[] {
  const now = ctx.now();
  return [...ctx.state.tokens.values()]
    .filter((t) => ctx.state.tokenProblem(t.token, now) === undefined)
    .map((t) => ctx.state.scopeOf(t));
}

/**
 * The simulator's own endpoint under `/_sim/` (docs/simulator.md): counts, tokens, faults,
 * clock and GitHub-side changes. Never counted as GitHub traffic; never shows a token.
 */
export function answerAdmin(ctx: SimContext, req: AdminRequest): Reply {
  let json: unknown = {};
  if (req.body.trim() !== "") {
    try {
      json = JSON.parse(req.body);
    } catch {
      return problem(400, "the body is not JSON");
    }
  }
  try {
    return route(ctx, req.method, req.path, json) ?? problem(404, `no admin route ${req.method} ${req.path}`);
  } catch (err) {
    // Messages come from zod and SimState: they name fields and ids, never values of tokens.
    return problem(400, err instanceof Error ? err.message : String(err));
  }
}

function route(ctx: SimContext, method: string, path: string, json: unknown): Reply | undefined {
  const { state, faults } = ctx;
  const ok = (body: unknown = {}) => answer(200, body);
  const key = `${method} ${path}`;
  switch (key) {
    case "GET /_sim/counts":
      return ok(ctx.counter.snapshot());
    case "POST /_sim/counts/reset":
      ctx.counter.reset();
      return ok();
    case "GET /_sim/tokens":
      return ok(liveTokens(ctx));
    case "POST /_sim/tokens/revoke":
      return ok({ revoked: state.revokeToken(parse(tokenBody, json).token) });
    case "POST /_sim/check-token": {
      const b = parse(checkTokenBody, json);
      return ok(state.checkToken(b.token, b.repository, ctx.now()));
    }
    case "GET /_sim/faults":
      return ok(faults.list());
    case "POST /_sim/faults":
      for (const rule of Array.isArray(json) ? json : [json]) faults.add(parse(faultRuleSchema, rule));
      return ok(faults.list());
    case "DELETE /_sim/faults":
      faults.clear();
      return ok([]);
    case "GET /_sim/clock":
      return ok({ offsetMs: ctx.clockOffset(), now: new Date(ctx.now()).toISOString() });
    case "POST /_sim/clock":
      ctx.setClockOffset(parse(clockBody, json).offsetMs);
      return ok({ offsetMs: ctx.clockOffset(), now: new Date(ctx.now()).toISOString() });
    case "POST /_sim/rate-limits/reset":
      ctx.rateLimiter.reset();
      return ok();
    case "GET /_sim/state":
      return ok({
        apps: [...state.apps.values()],
        installations: [...state.installations.values()],
        repositories: [...state.repositories.values()],
      });
    case "POST /_sim/seed":
      // load() validates the seed itself, with readable errors.
      state.load(json as Parameters<typeof state.load>[0]);
      return ok();
  }
  const installation = path.match(/^\/_sim\/installations\/(\d+)(?:\/(suspend|unsuspend|delete))?$/);
  if (installation) {
    const id = Number(installation[1]);
    const action = installation[2];
    if (!state.installations.has(id)) return problem(404, `no installation ${id}`);
    if (method === "POST" && action === "suspend") state.suspendInstallation(id, new Date(ctx.now()));
    else if (method === "POST" && action === "unsuspend") state.unsuspendInstallation(id);
    else if ((method === "POST" && action === "delete") || (method === "DELETE" && !action))
      state.removeInstallation(id);
    else return undefined;
    return ok();
  }
  const app = path.match(/^\/_sim\/apps\/(\d+)(\/keys)?$/);
  if (app) {
    const id = Number(app[1]);
    if (!state.apps.has(id)) return problem(404, `no App ${id}`);
    if (method === "POST" && app[2]) state.addAppPublicKey(id, parse(keyBody, json).publicKey);
    else if (method === "PUT" && app[2]) state.replaceAppPublicKeys(id, parse(keysBody, json).publicKeys);
    else if (method === "DELETE" && !app[2]) state.removeApp(id);
    else return undefined;
    return ok();
  }
  const repository = path.match(/^\/_sim\/repositories\/(\d+)(\/rename)?$/);
  if (repository) {
    const id = Number(repository[1]);
    if (!state.repositories.has(id)) return problem(404, `no repository ${id}`);
    if (method === "POST" && repository[2]) state.renameRepository(id, parse(renameBody, json).name);
    else if (method === "DELETE" && !repository[2]) state.removeRepository(id);
    else return undefined;
    return ok();
  }
  return undefined;
}

function parse<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new Error(`invalid body:\n${z.prettifyError(r.error)}`);
  return r.data;
}

function problem(status: number, message: string): Reply {
  return answer(status, { message, status: String(status) });
}

import { z } from "zod";
import { messages } from "./messages.ts";
import type { PermissionLevel, SimApp, SimInstallation, SimRepository } from "./seed.ts";
import type { IssuedToken, SimState } from "./state.ts";
import type { TokenFactory, TokenFormat } from "./tokens.ts";

/** GitHub's most repositories one token may name. */
export const maxRepositories = 500;

const rank: Record<PermissionLevel, number> = { read: 1, write: 2, admin: 3 };

const mintBody = z.object({
  repositories: z.array(z.string()).optional(),
  repository_ids: z.array(z.number().int()).optional(),
  permissions: z.record(z.string(), z.unknown()).optional(),
});

export interface MintRequest {
  app: SimApp;
  installationId: number;
  /** The request body as sent; empty means "everything the installation has". */
  rawBody: string;
  /** Simulator time, ms. */
  now: number;
  lifetimeSeconds: number;
  format: TokenFormat;
  /** Replication lag to give the new token (fault injection). */
  lag?: { ms: number; status: 401 | 403 } | undefined;
}

export type MintOutcome =
  | {
      ok: true;
      token: IssuedToken;
      installation: SimInstallation;
      /** Only when the request named repositories. */
      repositories: SimRepository[] | undefined;
    }
  | { ok: false; status: 400 | 403 | 404 | 422; message: string };

/**
 * POST /app/installations/{id}/access_tokens: GitHub's checks in order (unknown or foreign
 * installation 404, suspended 403, body 400, too many repositories 422, permissions 422,
 * levels 422, repositories 422), then a new token stored in `state`.
 */
export function mintToken(state: SimState, tokens: TokenFactory, req: MintRequest): MintOutcome {
  const inst = state.installations.get(req.installationId);
  if (!inst || inst.appId !== req.app.id) return { ok: false, status: 404, message: messages.notFound };
  if (inst.suspendedAt) return { ok: false, status: 403, message: messages.suspended };

  const body = parseBody(req.rawBody);
  if (!body) return { ok: false, status: 400, message: messages.parse };
  const names = body.repositories ?? [];
  const ids = body.repository_ids ?? [];
  if (names.length + ids.length > maxRepositories)
    return { ok: false, status: 422, message: messages.tooManyRepositories };

  const permissions = grantedPermissions(inst, body.permissions);
  if (!permissions.ok) return permissions;

  let limited: SimRepository[] | undefined;
  if (names.length + ids.length > 0) {
    const covered = state.covered(inst);
    const wanted = [
      ...names.map((n) => covered.find((r) => r.name.toLowerCase() === n.toLowerCase())),
      ...ids.map((id) => covered.find((r) => r.id === id)),
    ];
    if (wanted.some((r) => r === undefined)) return { ok: false, status: 422, message: messages.repository };
    limited = [...new Set(wanted as SimRepository[])];
  }

  const issuedAt = Math.floor(req.now / 1000) * 1000;
  const expiresAt = issuedAt + req.lifetimeSeconds * 1000;
  const token: IssuedToken = {
    token: tokens.make(req.format, { appId: req.app.id, installationId: inst.id, issuedAt, expiresAt }),
    appId: req.app.id,
    installationId: inst.id,
    permissions: permissions.granted,
    repositoryIds: limited?.map((r) => r.id),
    issuedAt,
    expiresAt,
    notBefore: req.now + (req.lag?.ms ?? 0),
    lagStatus: req.lag?.status ?? 401,
    revoked: false,
    format: req.format,
  };
  state.tokens.set(token.token, token);
  return { ok: true, token, installation: inst, repositories: limited };
}

function parseBody(raw: string): z.output<typeof mintBody> | undefined {
  if (raw.trim() === "") return {};
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const parsed = mintBody.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}

/** Requested permissions checked against the grant; all of the installation's when none are named. */
function grantedPermissions(
  inst: SimInstallation,
  requested: Record<string, unknown> | undefined,
): { ok: true; granted: Record<string, PermissionLevel> } | { ok: false; status: 422; message: string } {
  if (!requested || Object.keys(requested).length === 0)
    return { ok: true, granted: { ...inst.permissions } };
  const entries = Object.entries(requested);
  const isLevel = (v: unknown): v is PermissionLevel => v === "read" || v === "write" || v === "admin";
  if (entries.some(([name, level]) => inst.permissions[name] === undefined || !isLevel(level)))
    return { ok: false, status: 422, message: messages.permission };
  const granted: Record<string, PermissionLevel> = {};
  for (const [name, level] of entries) {
    const have = inst.permissions[name];
    if (!isLevel(level) || !have || rank[level] > rank[have])
      return { ok: false, status: 422, message: messages.level };
    granted[name] = level;
  }
  return { ok: true, granted };
}

import { createHmac, randomBytes, randomInt } from "node:crypto";
import { type SimApp, type SimInstallation, type SimRepository, type SimSeed, simSeed } from "./seed.ts";

export type Level = "read" | "write" | "admin";
const rank: Record<Level, number> = { read: 1, write: 2, admin: 3 };

export interface IssuedToken {
  token: string;
  appId: number;
  installationId: number;
  permissions: Record<string, Level>;
  /** Repository ids the token is limited to; undefined: everything the installation covers. */
  repositoryIds: number[] | undefined;
  issuedAt: number;
  expiresAt: number;
  /** Until this time (ms) GitHub has not replicated the token yet: it answers 401. */
  notBefore: number;
  revoked: boolean;
  format: "classic" | "stateless";
}

export interface Counts {
  total: number;
  byRoute: Record<string, number>;
  byRouteStatus: Record<string, number>;
  byApp: Record<string, number>;
  byInstallation: Record<string, number>;
}

export type MintOutcome =
  | { ok: true; token: IssuedToken; repositories: SimRepository[] | undefined }
  | { ok: false; status: number; message: string };

export const messages = {
  notFound: "Not Found",
  suspended: "This installation has been suspended",
  parse: "Problems parsing JSON",
  permission: "The permissions requested are not granted to this installation.",
  level: "The level of access for permissions requested are not granted to this installation.",
  repository:
    "There is at least one repository that does not exist or is not accessible to the parent installation.",
  tooMany: "The maximum number of repositories that can be requested is 500.",
  badCredentials: "Bad credentials",
} as const;

/** The simulator's world: Apps, installations, repositories, issued tokens and call counts. */
export class SimState {
  apps = new Map<number, SimApp>();
  installations = new Map<number, SimInstallation>();
  repositories = new Map<number, SimRepository>();
  readonly tokens = new Map<string, IssuedToken>();
  readonly rateLimits = new Map<number, { used: number; resetAt: number }>();
  counts: Counts = emptyCounts();
  readonly #statelessSecret = randomBytes(32);

  constructor(seed: SimSeed = {}) {
    this.load(seed);
  }

  load(seed: SimSeed): void {
    const s = simSeed.parse(seed);
    for (const a of s.apps) this.apps.set(a.id, a);
    for (const i of s.installations) this.installations.set(i.id, i);
    for (const r of s.repositories) this.repositories.set(r.id, r);
  }

  findApp(iss: string | number): SimApp | undefined {
    if (typeof iss === "number" || /^\d+$/.test(iss)) return this.apps.get(Number(iss));
    return [...this.apps.values()].find((a) => a.clientId === iss);
  }

  /** Repositories an installation covers. */
  covered(inst: SimInstallation): SimRepository[] {
    return [...this.repositories.values()].filter(
      (r) =>
        r.owner.toLowerCase() === inst.account.login.toLowerCase() &&
        (inst.repositorySelection === "all" || (inst.repositoryIds ?? []).includes(r.id)),
    );
  }

  findRepository(owner: string, name: string): SimRepository | undefined {
    return [...this.repositories.values()].find(
      (r) => r.owner.toLowerCase() === owner.toLowerCase() && r.name.toLowerCase() === name.toLowerCase(),
    );
  }

  /** GitHub's checks for POST /app/installations/{id}/access_tokens, in order. */
  mint(
    app: SimApp,
    installationId: number,
    rawBody: string,
    now: number,
    options: { lifetimeS: number; format: "classic" | "stateless"; lagMs: number },
  ): MintOutcome {
    const inst = this.installations.get(installationId);
    if (!inst || inst.appId !== app.id) return { ok: false, status: 404, message: messages.notFound };
    let body: { permissions?: unknown; repositories?: unknown; repository_ids?: unknown } = {};
    if (rawBody.trim() !== "") {
      try {
        body = JSON.parse(rawBody) as typeof body;
      } catch {
        return { ok: false, status: 400, message: messages.parse };
      }
      if (typeof body !== "object" || body === null || Array.isArray(body))
        return { ok: false, status: 400, message: messages.parse };
    }
    const perms = body.permissions;
    const names = body.repositories;
    const ids = body.repository_ids;
    if (perms !== undefined && (typeof perms !== "object" || perms === null || Array.isArray(perms)))
      return { ok: false, status: 400, message: messages.parse };
    if (names !== undefined && (!Array.isArray(names) || names.some((n) => typeof n !== "string")))
      return { ok: false, status: 400, message: messages.parse };
    if (ids !== undefined && (!Array.isArray(ids) || ids.some((n) => typeof n !== "number")))
      return { ok: false, status: 400, message: messages.parse };
    if (inst.suspendedAt) return { ok: false, status: 403, message: messages.suspended };
    const repoNames = (names ?? []) as string[];
    const repoIds = (ids ?? []) as number[];
    if (repoNames.length + repoIds.length > 500) return { ok: false, status: 422, message: messages.tooMany };

    const requested = (perms ?? undefined) as Record<string, unknown> | undefined;
    const granted: Record<string, Level> = {};
    if (requested && Object.keys(requested).length > 0) {
      for (const [name, level] of Object.entries(requested)) {
        const have = inst.permissions[name];
        if (!have || !(level === "read" || level === "write" || level === "admin")) {
          return { ok: false, status: 422, message: messages.permission };
        }
        if (rank[level] > rank[have]) return { ok: false, status: 422, message: messages.level };
        granted[name] = level;
      }
    } else {
      Object.assign(granted, inst.permissions);
    }

    let limited: SimRepository[] | undefined;
    if (repoNames.length > 0 || repoIds.length > 0) {
      const covered = this.covered(inst);
      limited = [];
      for (const name of repoNames) {
        const r = covered.find((c) => c.name.toLowerCase() === name.toLowerCase());
        if (!r) return { ok: false, status: 422, message: messages.repository };
        if (!limited.includes(r)) limited.push(r);
      }
      for (const id of repoIds) {
        const r = covered.find((c) => c.id === id);
        if (!r) return { ok: false, status: 422, message: messages.repository };
        if (!limited.includes(r)) limited.push(r);
      }
    }

    const issuedAt = Math.floor(now / 1000) * 1000;
    const expiresAt = issuedAt + options.lifetimeS * 1000;
    const token: IssuedToken = {
      token:
        options.format === "stateless" ? this.#statelessToken(app.id, inst.id, expiresAt) : classicToken(),
      appId: app.id,
      installationId: inst.id,
      permissions: granted,
      repositoryIds: limited?.map((r) => r.id),
      issuedAt,
      expiresAt,
      notBefore: now + options.lagMs,
      revoked: false,
      format: options.format,
    };
    this.tokens.set(token.token, token);
    return { ok: true, token, repositories: limited };
  }

  /** Why a token is not usable now, or undefined when it is live. */
  tokenProblem(value: string | undefined, now: number): string | undefined {
    const t = value ? this.tokens.get(value) : undefined;
    if (!t) return "unknown";
    if (t.revoked) return "revoked";
    if (now >= t.expiresAt) return "expired";
    if (now < t.notBefore) return "not yet replicated";
    return undefined;
  }

  /** Is the token live, and may it access owner/repo? */
  checkToken(value: string, repository: string | undefined, now: number) {
    const t = this.tokens.get(value);
    const problem = this.tokenProblem(value, now);
    const scope = t && {
      appId: t.appId,
      installationId: t.installationId,
      permissions: t.permissions,
      repositories: t.repositoryIds?.map((id) => {
        const r = this.repositories.get(id);
        return r ? `${r.owner}/${r.name}` : String(id);
      }),
      expiresAt: new Date(t.expiresAt).toISOString(),
      format: t.format,
    };
    if (problem) return { live: false, reason: problem, ...(scope ? { scope } : {}) };
    if (repository && t) {
      const [owner = "", name = ""] = repository.split("/");
      const repo = this.findRepository(owner, name);
      const inst = this.installations.get(t.installationId);
      const covered = inst ? this.covered(inst) : [];
      if (!repo || !covered.includes(repo) || (t.repositoryIds && !t.repositoryIds.includes(repo.id))) {
        return { live: false, reason: `no access to ${repository}`, scope };
      }
    }
    return { live: true, scope };
  }

  record(route: string, status: number, appId: number | undefined, installationId: number | undefined): void {
    const c = this.counts;
    c.total++;
    c.byRoute[route] = (c.byRoute[route] ?? 0) + 1;
    c.byRouteStatus[`${route} ${status}`] = (c.byRouteStatus[`${route} ${status}`] ?? 0) + 1;
    if (appId !== undefined) c.byApp[appId] = (c.byApp[appId] ?? 0) + 1;
    if (installationId !== undefined)
      c.byInstallation[installationId] = (c.byInstallation[installationId] ?? 0) + 1;
  }

  resetCounts(): void {
    this.counts = emptyCounts();
  }

  #statelessToken(appId: number, installationId: number, expiresAt: number): string {
    // Opaque like GitHub's: ghs_<appid>_<jwt>, ~520 characters with dots and underscores.
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const header = enc({ alg: "HS256", typ: "JWT" });
    const base = {
      iss: appId,
      sub: installationId,
      exp: Math.floor(expiresAt / 1000),
      jti: randomBytes(12).toString("hex"),
    };
    const padLength = Math.max(0, 300 - JSON.stringify(base).length);
    const payload = enc({ ...base, pad: randomBytes(padLength).toString("base64url").slice(0, padLength) });
    const sig = createHmac("sha256", this.#statelessSecret)
      .update(`${header}.${payload}`)
      .digest("base64url");
    return `ghs_${appId}_${header}.${payload}.${sig}`;
  }
}

function classicToken(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let s = "ghs_";
  for (let i = 0; i < 36; i++) s += alphabet[randomInt(alphabet.length)];
  return s;
}

function emptyCounts(): Counts {
  return { total: 0, byRoute: {}, byRouteStatus: {}, byApp: {}, byInstallation: {} };
}

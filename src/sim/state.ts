import { createHash } from "node:crypto";
import { z } from "zod";
import {
  type PermissionLevel,
  type SimApp,
  type SimAppInput,
  type SimInstallation,
  type SimInstallationInput,
  type SimRepository,
  type SimRepositoryInput,
  type SimSeed,
  simApp,
  simInstallation,
  simRepository,
  simSeed,
} from "./seed.ts";
import type { TokenFormat } from "./tokens.ts";

/** A token the simulator issued, with what it was granted. */
export interface IssuedToken {
  token: string;
  appId: number;
  installationId: number;
  permissions: Record<string, PermissionLevel>;
  /** Repository ids the token is limited to; undefined: everything the installation covers. */
  repositoryIds: number[] | undefined;
  issuedAt: number;
  expiresAt: number;
  /** Until this time (ms) the token is not replicated yet: token routes answer `lagStatus`. */
  notBefore: number;
  lagStatus: 401 | 403;
  revoked: boolean;
  format: TokenFormat;
}

/** What a token may do; never contains the token itself. */
export interface TokenScope {
  /** First 16 hex characters of the token's SHA-256, to tell tokens apart without showing them. */
  fingerprint: string;
  appId: number;
  installationId: number;
  permissions: Record<string, PermissionLevel>;
  repositorySelection: "all" | "selected";
  /** Only when the token was limited to repositories at minting. */
  repositoryIds?: number[];
  /** `owner/name` of those repositories. */
  repositories?: string[];
  issuedAt: string;
  expiresAt: string;
  format: TokenFormat;
}

export type TokenReason =
  | "unknown"
  | "revoked"
  | "expired"
  | "not yet replicated"
  | "installation removed"
  | "installation suspended"
  | `no access to ${string}`;

export interface TokenCheck {
  live: boolean;
  reason?: TokenReason;
  scope?: TokenScope;
}

/**
 * The simulator's world: Apps, installations, repositories and the tokens it issued. The maps
 * are public so tests can arrange odd states; the methods keep the world consistent.
 */
export class SimState {
  readonly apps = new Map<number, SimApp>();
  readonly installations = new Map<number, SimInstallation>();
  readonly repositories = new Map<number, SimRepository>();
  readonly tokens = new Map<string, IssuedToken>();

  constructor(seed: SimSeed = {}) {
    this.load(seed);
  }

  /** Adds (or replaces) the seed's Apps, repositories and installations. */
  load(seed: SimSeed): void {
    const s = parse(simSeed, seed, "seed");
    for (const a of s.apps) this.addApp(a);
    for (const r of s.repositories) this.addRepository(r);
    for (const i of s.installations) this.addInstallation(i);
  }

  addApp(input: SimAppInput): SimApp {
    const app = parse(simApp, input, "App");
    this.apps.set(app.id, app);
    return app;
  }

  /** Deletes an App with its installations; their tokens stop working. */
  removeApp(id: number): boolean {
    for (const i of [...this.installations.values()]) if (i.appId === id) this.installations.delete(i.id);
    return this.apps.delete(id);
  }

  /** Adds a key that signs the App's JWTs, keeping the others (rotation). */
  addAppPublicKey(appId: number, publicKeyPem: string): void {
    const app = this.#app(appId);
    const next = parse(simApp, { ...app, publicKeys: [...app.publicKeys, publicKeyPem] }, "App");
    app.publicKeys = next.publicKeys;
  }

  /** Replaces the App's keys: JWTs signed by a removed key are refused from now on. */
  replaceAppPublicKeys(appId: number, publicKeyPems: string[]): void {
    const app = this.#app(appId);
    const next = parse(simApp, { ...app, publicKeys: publicKeyPems }, "App");
    app.publicKeys = next.publicKeys;
  }

  addInstallation(input: SimInstallationInput): SimInstallation {
    const inst = parse(simInstallation, input, "installation");
    if (!this.apps.has(inst.appId)) throw new Error(`installation ${inst.id}: no App ${inst.appId}`);
    const clash = this.installations.get(inst.id);
    if (clash && clash.appId !== inst.appId)
      throw new Error(`installation ${inst.id} belongs to App ${clash.appId}: ids are unique across Apps`);
    for (const id of inst.repositoryIds ?? [])
      if (!this.repositories.has(id)) throw new Error(`installation ${inst.id}: no repository ${id}`);
    this.installations.set(inst.id, inst);
    return inst;
  }

  /** Uninstalls: lookups answer 404 and the installation's tokens stop working (401). */
  removeInstallation(id: number): boolean {
    return this.installations.delete(id);
  }

  /** Suspends: minting answers 403 and the installation's tokens stop working. */
  suspendInstallation(id: number, at: Date): void {
    this.#installation(id).suspendedAt = at.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  unsuspendInstallation(id: number): void {
    this.#installation(id).suspendedAt = null;
  }

  addRepository(input: SimRepositoryInput): SimRepository {
    const repo = parse(simRepository, input, "repository");
    this.repositories.set(repo.id, repo);
    return repo;
  }

  removeRepository(id: number): boolean {
    for (const i of this.installations.values()) {
      if (i.repositoryIds?.includes(id)) i.repositoryIds = i.repositoryIds.filter((r) => r !== id);
    }
    return this.repositories.delete(id);
  }

  /** Renames a repository; lookups by the old name answer 301 like GitHub's. */
  renameRepository(id: number, name: string): SimRepository {
    const repo = this.repositories.get(id);
    if (!repo) throw new Error(`no repository ${id}`);
    repo.formerNames = [...(repo.formerNames ?? []), repo.name];
    repo.name = name;
    return repo;
  }

  findApp(iss: string | number): SimApp | undefined {
    if (typeof iss === "number") return this.apps.get(iss);
    if (/^\d+$/.test(iss)) return this.apps.get(Number(iss));
    return [...this.apps.values()].find((a) => a.clientId === iss);
  }

  /** Repositories an installation covers: its account's, all or the selected ones. */
  covered(inst: SimInstallation): SimRepository[] {
    return [...this.repositories.values()]
      .filter(
        (r) =>
          r.owner.toLowerCase() === inst.account.login.toLowerCase() &&
          (inst.repositorySelection === "all" || (inst.repositoryIds ?? []).includes(r.id)),
      )
      .sort((a, b) => a.id - b.id);
  }

  findRepository(owner: string, name: string): SimRepository | undefined {
    const o = owner.toLowerCase();
    const n = name.toLowerCase();
    return [...this.repositories.values()].find(
      (r) => r.owner.toLowerCase() === o && r.name.toLowerCase() === n,
    );
  }

  /** A repository that was renamed or transferred away from `owner/name`. */
  findRenamedRepository(owner: string, name: string): SimRepository | undefined {
    const o = owner.toLowerCase();
    const n = name.toLowerCase();
    const full = `${o}/${n}`;
    return [...this.repositories.values()].find(
      (r) =>
        (r.owner.toLowerCase() === o && (r.formerNames ?? []).some((f) => f.toLowerCase() === n)) ||
        (r.transferredFrom ?? []).some((f) => f.toLowerCase() === full),
    );
  }

  revokeToken(value: string): boolean {
    const t = this.tokens.get(value);
    if (!t || t.revoked) return false;
    t.revoked = true;
    return true;
  }

  /** Why GitHub would refuse the token at `now` (ms), or undefined when it accepts it. */
  tokenProblem(
    value: string | undefined,
    now: number,
  ): { reason: TokenReason; status: 401 | 403 } | undefined {
    const t = value ? this.tokens.get(value) : undefined;
    if (!t) return { reason: "unknown", status: 401 };
    if (t.revoked) return { reason: "revoked", status: 401 };
    if (now >= t.expiresAt) return { reason: "expired", status: 401 };
    const inst = this.installations.get(t.installationId);
    if (!inst || inst.appId !== t.appId || !this.apps.has(t.appId))
      return { reason: "installation removed", status: 401 };
    if (now < t.notBefore) return { reason: "not yet replicated", status: t.lagStatus };
    if (inst.suspendedAt) return { reason: "installation suspended", status: 403 };
    return undefined;
  }

  /** Is the token live, and may it reach `owner/repo`? */
  checkToken(value: string, repository: string | undefined, now: number): TokenCheck {
    const t = this.tokens.get(value);
    if (!t) return { live: false, reason: "unknown" };
    const scope = this.scopeOf(t);
    const problem = this.tokenProblem(value, now);
    if (problem) return { live: false, reason: problem.reason, scope };
    if (repository !== undefined && !this.reaches(t, repository)) {
      return { live: false, reason: `no access to ${repository}`, scope };
    }
    return { live: true, scope };
  }

  /** Repositories a token reaches now. */
  repositoriesOf(t: IssuedToken): SimRepository[] {
    const inst = this.installations.get(t.installationId);
    const covered = inst ? this.covered(inst) : [];
    return t.repositoryIds ? covered.filter((r) => t.repositoryIds?.includes(r.id)) : covered;
  }

  scopeOf(t: IssuedToken): TokenScope {
    const inst = this.installations.get(t.installationId);
    const names = t.repositoryIds?.map((id) => {
      const r = this.repositories.get(id);
      return r ? `${r.owner}/${r.name}` : String(id);
    });
    return {
      fingerprint: createHash("sha256").update(t.token).digest("hex").slice(0, 16),
      appId: t.appId,
      installationId: t.installationId,
      permissions: { ...t.permissions },
      repositorySelection: t.repositoryIds ? "selected" : (inst?.repositorySelection ?? "all"),
      ...(t.repositoryIds && names ? { repositoryIds: [...t.repositoryIds], repositories: names } : {}),
      issuedAt: isoSeconds(t.issuedAt),
      expiresAt: isoSeconds(t.expiresAt),
      format: t.format,
    };
  }

  reaches(t: IssuedToken, repository: string): boolean {
    const [owner = "", name = "", ...rest] = repository.split("/");
    const repo = rest.length === 0 ? this.findRepository(owner, name) : undefined;
    return repo !== undefined && this.repositoriesOf(t).includes(repo);
  }

  #app(id: number): SimApp {
    const app = this.apps.get(id);
    if (!app) throw new Error(`no App ${id}`);
    return app;
  }

  #installation(id: number): SimInstallation {
    const inst = this.installations.get(id);
    if (!inst) throw new Error(`no installation ${id}`);
    return inst;
  }
}

/** `2023-06-08T08:39:25Z`: GitHub's second-precision times. */
export function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function parse<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new Error(`invalid ${what}:\n${z.prettifyError(r.error)}`);
  return r.data;
}

import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

/** Permission levels, in GitHub's order: read < write < admin. */
export const permissionLevel = z.enum(["read", "write", "admin"]);
export type PermissionLevel = z.output<typeof permissionLevel>;

const publicKeyPem = z
  .string()
  .refine((s) => /-----BEGIN (RSA )?PUBLIC KEY-----/.test(s), "must be a PEM public key (BEGIN PUBLIC KEY)");

export const simApp = z.object({
  id: z.number().int().positive(),
  clientId: z.string().min(1),
  slug: z.string().min(1),
  name: z.string().optional(),
  /** Login of the account that owns the App. */
  owner: z.string().min(1).default("github"),
  /** PEM public keys; a JWT signed by any of them is accepted (key rotation). */
  publicKeys: z.array(publicKeyPem).min(1),
  /** The App's own permissions (GET /app); defaults to the union of its installations'. */
  permissions: z.record(z.string(), permissionLevel).optional(),
  events: z.array(z.string()).optional(),
});

export const simInstallation = z.object({
  id: z.number().int().positive(),
  appId: z.number().int().positive(),
  account: z.object({
    login: z.string().min(1),
    type: z.enum(["Organization", "User"]).default("Organization"),
    id: z.number().int().positive().optional(),
  }),
  permissions: z.record(z.string(), permissionLevel),
  repositorySelection: z.enum(["all", "selected"]).default("all"),
  /** For "selected": the ids of the repositories the installation covers. */
  repositoryIds: z.array(z.number().int().positive()).optional(),
  /** null or an ISO time: a suspended installation cannot mint (403). */
  suspendedAt: z.string().nullable().optional(),
  events: z.array(z.string()).optional(),
});

export const simRepository = z.object({
  id: z.number().int().positive(),
  owner: z.string().min(1),
  name: z.string().min(1),
  private: z.boolean().default(true),
  /** Earlier names: GET /repos/{owner}/{old}/installation answers 301 to the repository id. */
  formerNames: z.array(z.string().min(1)).optional(),
  /**
   * Earlier `owner/name`s under another account (a transferred repository):
   * GET /repos/{old owner}/{name}/installation answers 301 to the repository id, as GitHub does.
   */
  transferredFrom: z.array(z.string().regex(/^[^/\s]+\/[^/\s]+$/, "owner/name")).optional(),
});

export const simSeed = z.object({
  apps: z.array(simApp).default([]),
  installations: z.array(simInstallation).default([]),
  repositories: z.array(simRepository).default([]),
});

export type SimApp = z.output<typeof simApp>;
export type SimInstallation = z.output<typeof simInstallation>;
export type SimRepository = z.output<typeof simRepository>;
/** What callers write: defaults may be left out. */
export type SimAppInput = z.input<typeof simApp>;
export type SimInstallationInput = z.input<typeof simInstallation>;
export type SimRepositoryInput = z.input<typeof simRepository>;
export type SimSeed = z.input<typeof simSeed>;
export type ParsedSeed = z.output<typeof simSeed>;

/** Cross-references a complete seed must satisfy, as readable lines (empty when fine). */
export function seedProblems(seed: ParsedSeed): string[] {
  const problems: string[] = [];
  const duplicates = (kind: string, ids: number[]) => {
    const seen = new Set<number>();
    for (const id of ids) {
      if (seen.has(id)) problems.push(`${kind} id ${id} appears more than once`);
      seen.add(id);
    }
  };
  duplicates(
    "App",
    seed.apps.map((a) => a.id),
  );
  duplicates(
    "installation",
    seed.installations.map((i) => i.id),
  );
  duplicates(
    "repository",
    seed.repositories.map((r) => r.id),
  );
  const apps = new Set(seed.apps.map((a) => a.id));
  const repos = new Map(seed.repositories.map((r) => [r.id, r]));
  for (const i of seed.installations) {
    if (!apps.has(i.appId)) problems.push(`installation ${i.id}: appId ${i.appId} is not an App of the seed`);
    for (const id of i.repositoryIds ?? []) {
      const r = repos.get(id);
      if (!r) problems.push(`installation ${i.id}: repository id ${id} is not a repository of the seed`);
      else if (r.owner.toLowerCase() !== i.account.login.toLowerCase())
        problems.push(
          `installation ${i.id}: repository ${r.owner}/${r.name} is not owned by ${i.account.login}`,
        );
    }
  }
  return problems;
}

/** Validates seed data (already parsed from YAML or JSON); `source` names it in errors. */
export function parseSeed(data: unknown, source = "seed"): ParsedSeed {
  const parsed = simSeed.safeParse(data ?? {});
  if (!parsed.success) throw new Error(`${source} is invalid:\n${z.prettifyError(parsed.error)}`);
  const problems = seedProblems(parsed.data);
  if (problems.length > 0)
    throw new Error(`${source} is invalid:\n${problems.map((p) => `✖ ${p}`).join("\n")}`);
  return parsed.data;
}

/** Reads a YAML or JSON seed file; errors name the file and the bad fields. */
export function loadSeedFile(path: string): ParsedSeed {
  let data: unknown;
  try {
    data = parseYaml(readFileSync(path, "utf8"));
  } catch (err) {
    throw new Error(`seed file ${path} cannot be read: ${err instanceof Error ? err.message : String(err)}`);
  }
  return parseSeed(data, `seed file ${path}`);
}

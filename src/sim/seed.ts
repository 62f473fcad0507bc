import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

const level = z.enum(["read", "write", "admin"]);

export const simApp = z.object({
  id: z.number().int().positive(),
  clientId: z.string().min(1),
  slug: z.string().min(1),
  name: z.string().optional(),
  owner: z.string().default("github"),
  publicKeys: z.array(z.string().includes("PUBLIC KEY")).min(1),
});
export const simInstallation = z.object({
  id: z.number().int().positive(),
  appId: z.number().int().positive(),
  account: z.object({
    login: z.string().min(1),
    type: z.enum(["Organization", "User"]).default("Organization"),
    id: z.number().int().optional(),
  }),
  permissions: z.record(z.string(), level),
  repositorySelection: z.enum(["all", "selected"]).default("all"),
  /** For "selected": the repository ids the installation covers. */
  repositoryIds: z.array(z.number().int()).optional(),
  suspendedAt: z.string().nullable().optional(),
});
export const simRepository = z.object({
  id: z.number().int().positive(),
  owner: z.string().min(1),
  name: z.string().min(1),
  private: z.boolean().default(true),
});
export const simSeed = z.object({
  apps: z.array(simApp).default([]),
  installations: z.array(simInstallation).default([]),
  repositories: z.array(simRepository).default([]),
});

export type SimApp = z.output<typeof simApp>;
export type SimInstallation = z.output<typeof simInstallation>;
export type SimRepository = z.output<typeof simRepository>;
export type SimSeed = z.input<typeof simSeed>;

/** Reads a YAML or JSON seed file; errors name the file and the bad fields. */
export function loadSeedFile(path: string): z.output<typeof simSeed> {
  const data: unknown = parseYaml(readFileSync(path, "utf8"));
  const parsed = simSeed.safeParse(data);
  if (!parsed.success) throw new Error(`seed file ${path} is invalid:\n${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

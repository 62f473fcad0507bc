import { z } from "zod";
import { githubPermissions } from "./permissions.generated.ts";

export type PermissionName = keyof typeof githubPermissions;
export type PermissionLevel = "read" | "write" | "admin";

/** read < write < admin. */
export const levelRank: Record<PermissionLevel, number> = { read: 1, write: 2, admin: 3 };

export const permissionNames = Object.keys(githubPermissions) as PermissionName[];

/**
 * A map of GitHub App permission name to level, e.g. `{contents: read, pull_requests: write}`.
 * Names and levels are GitHub's (schema `app-permissions`); anything else is rejected at
 * admission with a message naming the allowed values.
 */
export const permissions = z
  .record(z.string(), z.enum(["read", "write", "admin"]))
  .describe(
    "GitHub App permissions to request, as name: level (read, write or admin), for example contents: read. Names are GitHub's app-permissions; omitted means every permission of the installation.",
  )
  .meta({
    maxProperties: permissionNames.length,
    "x-kubernetes-validations": [
      {
        rule: `self.all(k, k in [${permissionNames.map((n) => `'${n}'`).join(", ")}])`,
        message: "unknown permission name: see GitHub's app-permissions for the allowed names",
      },
      ...levelRules(),
    ],
  });
export type Permissions = Partial<Record<string, PermissionLevel>>;

/** One CEL rule per group of permissions that do not offer every level. */
function levelRules(): { rule: string; message: string }[] {
  const byLevels = new Map<string, string[]>();
  for (const [name, levels] of Object.entries(githubPermissions)) {
    const key = [...levels].join("|");
    if (key === "read|write|admin") continue;
    byLevels.set(key, [...(byLevels.get(key) ?? []), name]);
  }
  return [...byLevels].map(([key, names]) => {
    const levels = key.split("|");
    return {
      rule: `self.all(k, !(k in [${names.map((n) => `'${n}'`).join(", ")}]) || self[k] in [${levels.map((l) => `'${l}'`).join(", ")}])`,
      message: `permissions ${names.join(", ")} accept only: ${levels.join(", ")}`,
    };
  });
}

/** Returns a readable problem for each permission GitHub would not accept, or []. */
export function permissionProblems(requested: Permissions): string[] {
  const problems: string[] = [];
  const table: Record<string, readonly string[]> = githubPermissions;
  for (const [name, level] of Object.entries(requested)) {
    const levels = table[name];
    if (!levels) problems.push(`unknown permission "${name}"`);
    else if (level && !levels.includes(level)) {
      problems.push(`permission "${name}" accepts ${levels.join(" or ")}, not ${level}`);
    }
  }
  return problems;
}

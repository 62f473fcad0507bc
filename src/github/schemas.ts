import { z } from "zod";
import { GhatError, redact } from "../core/errors.ts";
import type { GitHubAppInfo, Installation } from "./types.ts";

/**
 * GitHub's answers, validated at the boundary: only the fields ghat reads, everything else
 * ignored. Shapes follow GitHub's OpenAPI description (`installation`, `installation-token`,
 * `integration`; see test/fixtures/openapi/github-app-routes.json).
 */

/** `account` is a user or organization (`login`, `type`) or an enterprise (`slug`), or null. */
const account = z
  .object({ login: z.string().optional(), slug: z.string().optional(), type: z.string().optional() })
  .nullable()
  .optional();

export const installationSchema = z
  .object({
    id: z.number().int().positive(),
    app_id: z.number().int().positive(),
    account,
    repository_selection: z.string(),
    permissions: z.record(z.string(), z.string()),
    suspended_at: z.string().nullable().optional(),
  })
  .transform(
    (i): Installation => ({
      id: i.id,
      appId: i.app_id,
      account: {
        login: i.account?.login ?? i.account?.slug ?? "",
        type: i.account?.type ?? (i.account?.slug !== undefined ? "Enterprise" : ""),
      },
      repositorySelection: i.repository_selection,
      permissions: i.permissions,
      suspendedAt: i.suspended_at ?? null,
    }),
  );

export const installationListSchema = z.array(installationSchema);

export const installationTokenSchema = z.object({
  token: z.string().min(1),
  /** e.g. `2023-06-08T08:39:25Z`. */
  expires_at: z.iso.datetime({ offset: true }),
  permissions: z.record(z.string(), z.string()).optional(),
  repository_selection: z.string().optional(),
  repositories: z
    .array(z.object({ id: z.number().int(), name: z.string(), full_name: z.string() }))
    .optional(),
});

export const appSchema = z
  .object({
    id: z.number().int().positive(),
    name: z.string(),
    slug: z.string().optional(),
    client_id: z.string().optional(),
  })
  .transform((a): GitHubAppInfo => ({ id: a.id, name: a.name, slug: a.slug, clientId: a.client_id }));

/** Parses a successful answer; anything GitHub's API does not describe is `GitHubUnavailable`. */
export function parseAnswer<T>(schema: z.ZodType<T>, text: string, what: string): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new GhatError("GitHubUnavailable", `GitHub's answer to ${what} is not JSON`);
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    const why = z.prettifyError(result.error).replace(/\s+/g, " ").slice(0, 300);
    throw new GhatError(
      "GitHubUnavailable",
      redact(`GitHub's answer to ${what} is not what its API describes: ${why}`),
    );
  }
  return result.data;
}

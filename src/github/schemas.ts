import { z } from "zod";
import { GhatError } from "../core/errors.ts";
import { quotable } from "./classify.ts";
import type { GitHubAppInfo, Installation } from "./types.ts";

/**
 * GitHub's answers, validated at the boundary: only the fields ghat reads, everything else
 * ignored. Shapes follow GitHub's OpenAPI description (`installation`, `installation-token`,
 * `integration`; see test/fixtures/openapi/github-app-routes.json).
 */

/**
 * Bounds on what is copied from an answer into ghat's objects (and from there into status and
 * Secrets): GitHub's real answers are far inside them; a hostile or broken server is refused
 * with `InvalidResponse` rather than filling memory, status or events.
 */
export const answerBounds = {
  /** GitHub's `app-permissions` schema names about 55. */
  permissions: 100,
  permissionName: /^[a-z][a-z0-9_]{0,63}$/,
  /** A mint names at most 500 repositories. */
  repositories: 500,
  /** GitHub's limits: login 39, repository name 100. */
  login: 100,
  repositoryName: 100,
  fullName: 200,
} as const;

/**
 * An installation token as GitHub mints it: classic `ghs_` + 36 alphanumerics, or the
 * stateless `ghs_<appid>_<jwt>` (about 520 characters, with `.`, `_` and `-`). The upper bound
 * leaves room for longer JWTs while keeping a token a header value and a Secret can hold
 * (GitHub recommends `ghs_[A-Za-z0-9._]{36,}`; `-` is in the JWT alphabet).
 */
export const installationTokenPattern = /^ghs_[A-Za-z0-9._-]{36,4096}$/;

/** Whether `value` has the grammar of a GitHub App installation token (nothing else is stored or sent). */
export function isInstallationToken(value: unknown): value is string {
  return typeof value === "string" && installationTokenPattern.test(value);
}

/** `{ name: "read" | "write" | "admin" }`, at most 100 names of GitHub's shape. */
const permissions = z
  .record(z.string().regex(answerBounds.permissionName), z.enum(["read", "write", "admin"]))
  .refine((p) => Object.keys(p).length <= answerBounds.permissions, {
    error: `more than ${answerBounds.permissions} permissions`,
  });

/** `account` is a user or organization (`login`, `type`) or an enterprise (`slug`), or null. */
const account = z
  .object({
    login: z.string().max(answerBounds.login).optional(),
    slug: z.string().max(answerBounds.login).optional(),
    type: z.string().max(answerBounds.login).optional(),
  })
  .nullable()
  .optional();

export const installationSchema = z
  .object({
    id: z.number().int().positive(),
    app_id: z.number().int().positive(),
    account,
    repository_selection: z.string().max(20),
    permissions,
    suspended_at: z.string().max(64).nullable().optional(),
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

/**
 * The shape of a mint's 201; the token's grammar and the `expires_at` window are checked by
 * the client (their messages must not quote the token, and the window needs the Date header).
 */
export const installationTokenSchema = z.object({
  token: z.string().min(1),
  /** e.g. `2023-06-08T08:39:25Z`. */
  expires_at: z.iso.datetime({ offset: true }),
  permissions: permissions.optional(),
  repository_selection: z.string().max(20).optional(),
  repositories: z
    .array(
      z.object({
        id: z.number().int(),
        name: z.string().max(answerBounds.repositoryName),
        full_name: z.string().max(answerBounds.fullName),
      }),
    )
    .max(answerBounds.repositories)
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

/**
 * Parses a successful answer. An answer outside ghat's bounds (too many or too long entries,
 * a permission name or level GitHub does not use) is `InvalidResponse`; anything else GitHub's
 * API does not describe is `GitHubUnavailable`. Both are retried.
 */
export function parseAnswer<T>(schema: z.ZodType<T>, text: string, what: string): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new GhatError("GitHubUnavailable", `GitHub's answer to ${what} is not JSON`);
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    const bound = result.error.issues.some(isBoundIssue);
    // Record keys from the answer appear in it: quoted like any remote text.
    const why = quotable(z.prettifyError(result.error), 300);
    throw new GhatError(
      bound ? "InvalidResponse" : "GitHubUnavailable",
      bound
        ? `GitHub's answer to ${what} is outside ghat's bounds: ${why}`
        : `GitHub's answer to ${what} is not what its API describes: ${why}`,
    );
  }
  return result.data;
}

/** Issues raised by the bounds above (sizes, name pattern, level enum), not by the shape. */
function isBoundIssue(issue: z.core.$ZodIssue): boolean {
  return (
    issue.code === "too_big" ||
    issue.code === "custom" ||
    issue.code === "invalid_value" ||
    issue.code === "invalid_key" ||
    (issue.code === "invalid_format" && issue.format === "regex")
  );
}

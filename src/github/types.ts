import type { KeyObject } from "node:crypto";
import type { AppSigner } from "../signer/types.ts";

/**
 * Who the App is. The JWT's issuer is the numeric `appId` when present (GitHub Enterprise
 * Server before 3.14 accepts only that), else the `clientId`.
 */
export interface AppCredentials {
  appId?: number | undefined;
  clientId?: string | undefined;
  /** The private key, or a keyless signer; either way the same object for the same key (JWT cache). */
  key: KeyObject | AppSigner;
}

/** The App itself, as `GET /app` describes it. */
export interface GitHubAppInfo {
  id: number;
  name: string;
  slug: string | undefined;
  clientId: string | undefined;
}

/** The few fields of an installation ghat uses. */
export interface Installation {
  id: number;
  appId: number;
  /** The user, organization or enterprise the App is installed on (enterprise: its slug). */
  account: { login: string; type: string };
  /** "all" or "selected". */
  repositorySelection: string;
  permissions: Record<string, string>;
  /** ISO time, or null when not suspended. */
  suspendedAt: string | null;
}

/** How a token names its installation: exactly one of id, owner login, or `owner/repo`. */
export type InstallationRef = { id: number } | { owner: string } | { repository: string };

/** What a token asks for. Arrays are copied, never mutated; empty fields are not sent. */
export interface MintRequest {
  /** `{ name: "read" | "write" | "admin" }`; omitted: everything the installation has. */
  permissions?: Readonly<Record<string, string>> | undefined;
  /** Repository names without owner; omitted (with repositoryIds): every repository. */
  repositories?: readonly string[] | undefined;
  repositoryIds?: readonly number[] | undefined;
}

export interface MintedToken {
  /** Opaque: classic `ghs_` + 36 characters, or the ~520-character stateless format; always of GitHub's grammar (`isInstallationToken`). */
  token: string;
  /** Epoch ms, from the server's `expires_at` (never computed locally). */
  expiresAt: number;
  /** What GitHub granted, which may differ from what was asked. */
  permissions: Record<string, string>;
  repositorySelection: string;
  /** Only when the request named repositories. */
  repositories?: { id: number; name: string; fullName: string }[];
}

/** An installation's rate-limit headroom, from `x-ratelimit-*` headers. */
export interface RateLimit {
  limit: number;
  remaining: number;
  used: number;
  /** Epoch seconds. */
  reset: number;
}

/** One HTTP exchange, for metrics. `status` is 0 when no answer came (timeout, DNS, reset). */
export interface RequestInfo {
  /** GitHub's operation id, e.g. `apps/create-installation-access-token`. */
  route: string;
  method: string;
  status: number;
  durationMs: number;
}

import { afterAll, beforeAll, beforeEach } from "vitest";
import { GhatError } from "../../../src/core/errors.ts";
import { createGitHubClient, type GitHubClientOptions } from "../../../src/github/client.ts";
import { FakeClock } from "../fakeclock.ts";
import { type FakeGitHub, startFakeGitHub } from "./fakegithub.ts";

/** When the client tests' clock starts. */
export const start = Date.parse("2026-11-24T12:00:00Z");
/** An installation token in the classic format. */
export const classic = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";

export const mintPath = (id: number) => `/app/installations/${id}/access_tokens`;

/** GitHub's answer to a mint, with `overrides`. */
export const tokenBody = (overrides: Record<string, unknown> = {}) => ({
  token: classic,
  expires_at: "2026-11-24T12:59:59Z",
  permissions: { contents: "read", metadata: "read" },
  repository_selection: "selected",
  ...overrides,
});

/** The GhatError `p` rejects with (anything else fails the test). */
export async function caught(p: Promise<unknown>): Promise<GhatError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof GhatError) return err;
    throw err;
  }
  throw new Error("expected a GhatError");
}

/** The file's fake GitHub, set by `useFakeGitHub`. */
export let github: FakeGitHub;
/** A fresh FakeClock at `start` for each test, set by `useFakeGitHub`. */
export let clock: FakeClock;

/**
 * One fake GitHub for the test file (`github`), reset before each test, which also gets a
 * fresh `clock`.
 */
export function useFakeGitHub(): void {
  beforeAll(async () => {
    github = await startFakeGitHub();
  });
  afterAll(() => github.close());
  beforeEach(() => {
    github.reset();
    clock = new FakeClock(start);
  });
}

/** A client of the fake GitHub on the test's clock. */
export const client = (options: Partial<GitHubClientOptions> = {}) =>
  createGitHubClient({ baseUrl: github.url, clock, userAgent: "ghat/test", ...options });

import type { OutputContext } from "../../../src/core/outputs.ts";

/** An output context for rendering tests, with the token given. */
export function outputContext(token: string): OutputContext {
  return {
    token,
    host: "github.com",
    owner: "acme",
    repositories: ["app"],
    tokenName: "ci",
    apiUrl: "https://api.github.com",
    expiresAt: "2026-11-24T13:00:00.000Z",
    refreshAt: "2026-11-24T12:40:00.000Z",
    scopeHash: "abc",
  };
}

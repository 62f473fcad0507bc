import type { KeyObject } from "node:crypto";
import { CompactSign } from "jose";

export interface AppJwtInput {
  key: KeyObject;
  /** Numeric App id (sent as a JSON number) or client id (a string). */
  issuer: string | number;
  /** Our clock, epoch ms. */
  nowMs: number;
  /** Learned difference between GitHub's clock and ours (GitHub minus us), ms. */
  offsetMs: number;
}

/** `iat` this far back: GitHub's own advice against clock drift. */
export const jwtBackdateSeconds = 60;
/** `exp` this far ahead: GitHub refuses more than 600 s, so a clock up to 60 s fast still passes. */
export const jwtLifetimeSeconds = 540;

/**
 * The App's JWT: RS256, `iat` 60 s in the past and `exp` 540 s ahead, both in integer seconds
 * on GitHub's clock (ours plus the learned offset). The payload is serialised here rather than
 * through jose's `SignJWT`, whose `iss` is typed as a string: Enterprise Server before 3.14
 * wants the numeric App id, and a number is what GitHub documents.
 * @see https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
 */
export async function signAppJwt(input: AppJwtInput): Promise<string> {
  const now = Math.floor((input.nowMs + input.offsetMs) / 1000);
  const claims = { iat: now - jwtBackdateSeconds, exp: now + jwtLifetimeSeconds, iss: input.issuer };
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ alg: "RS256", typ: "JWT" })
    .sign(input.key);
}

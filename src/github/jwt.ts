import type { KeyObject } from "node:crypto";
import { SignJWT } from "jose";

export interface AppJwtInput {
  key: KeyObject;
  /** Numeric App id or client id. */
  issuer: string;
  nowMs: number;
  /** Learned difference between GitHub's clock and ours (GitHub minus us), ms. */
  offsetMs: number;
}

/**
 * The App's JWT: RS256, iat 60 s in the past (GitHub's advice against drift), exp 9 minutes
 * ahead (under GitHub's 10-minute limit even with some drift), both on GitHub's clock.
 */
export async function signAppJwt(input: AppJwtInput): Promise<string> {
  const now = Math.floor((input.nowMs + input.offsetMs) / 1000);
  // GitHub takes a numeric App id as a number or a string; a string keeps one code path.
  return new SignJWT({})
    .setProtectedHeader({ alg: "RS256", typ: "JWT" })
    .setIssuer(input.issuer)
    .setIssuedAt(now - 60)
    .setExpirationTime(now + 540)
    .sign(input.key);
}

import type { KeyObject } from "node:crypto";
import { base64url, CompactSign } from "jose";
import type { AppSigner } from "../signer/types.ts";

export interface AppJwtInput {
  /** The private key, or a keyless signer (Vault, KMS, HSM) that signs the signing input. */
  key: KeyObject | AppSigner;
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
  const payload = new TextEncoder().encode(JSON.stringify(claims));
  if (!isSigner(input.key)) {
    return new CompactSign(payload).setProtectedHeader({ alg: "RS256", typ: "JWT" }).sign(input.key);
  }
  // RFC 7515 §5.1: the signature is over ASCII(BASE64URL(header) '.' BASE64URL(payload)).
  const signingInput = `${base64url.encode(JSON.stringify({ alg: "RS256", typ: "JWT" }))}.${base64url.encode(payload)}`;
  const signature = await input.key.sign(new TextEncoder().encode(signingInput));
  return `${signingInput}.${base64url.encode(signature)}`;
}

/** A keyless signer rather than a KeyObject. */
export function isSigner(key: KeyObject | AppSigner): key is AppSigner {
  return typeof (key as AppSigner).sign === "function" && typeof (key as AppSigner).id === "string";
}

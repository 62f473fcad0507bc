import { type KeyObject, sign } from "node:crypto";
import { GhatError } from "../core/errors.ts";
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
 * through a JWT library's claims API, whose `iss` is typed as a string: Enterprise Server
 * before 3.14 wants the numeric App id, and a number is what GitHub documents.
 *
 * A private key signs with node:crypto, synchronously: one RS256 signature (about a
 * millisecond) per App per JWT reuse window, where WebCrypto would load its modules (about
 * 2 MiB) and a thread pool for it. The simulator and the tests verify with jose.
 * @see https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
 */
export async function signAppJwt(input: AppJwtInput): Promise<string> {
  const now = Math.floor((input.nowMs + input.offsetMs) / 1000);
  const claims = { iat: now - jwtBackdateSeconds, exp: now + jwtLifetimeSeconds, iss: input.issuer };
  // RFC 7515 §5.1: the signature is over ASCII(BASE64URL(header) '.' BASE64URL(payload)).
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const data = Buffer.from(signingInput, "ascii");
  // RSASSA-PKCS1-v1_5 with SHA-256 (RS256): node's default padding for an RSA key.
  const signature = isSigner(input.key) ? await input.key.sign(data) : signWith(input.key, data);
  return `${signingInput}.${base64url(signature)}`;
}

const header = { alg: "RS256", typ: "JWT" };

/**
 * A key that parses can still fail to sign (a damaged key whose numbers do not fit together:
 * OpenSSL answers "no inverse"): that is the key's fault, said without its material.
 */
function signWith(key: KeyObject, data: Buffer): Buffer {
  try {
    return sign("sha256", data, key);
  } catch (err) {
    const reason = err instanceof Error ? (err.message.split("::")[1] ?? err.message).slice(0, 100) : "";
    throw new GhatError(
      "InvalidPrivateKey",
      `the private key could not sign the App's JWT${reason ? ` (${reason})` : ""}; download a new key from the App's settings`,
    );
  }
}

function base64url(data: string | Uint8Array): string {
  return (typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data)).toString("base64url");
}

/** A keyless signer rather than a KeyObject. */
export function isSigner(key: KeyObject | AppSigner): key is AppSigner {
  return typeof (key as AppSigner).sign === "function" && typeof (key as AppSigner).id === "string";
}

import { generateKeyPairSync, type KeyObject, randomBytes, randomInt, sign } from "node:crypto";

export type TokenFormat = "classic" | "stateless";

export interface TokenClaims {
  appId: number;
  installationId: number;
  /** Epoch ms. */
  issuedAt: number;
  /** Epoch ms. */
  expiresAt: number;
}

/** Length GitHub's stateless tokens have, roughly (shared GITHUB_API.md). */
export const statelessTokenLength = 520;

const alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * Makes installation token values in GitHub's two formats. Classic: `ghs_` + 36 alphanumerics.
 * Stateless: `ghs_<appid>_<jwt>`, a JWT signed with a key only this simulator holds, its claims
 * padded to about 520 characters. Both fit GitHub's recommended pattern `ghs_[A-Za-z0-9._]{36,}`:
 * base64url of ASCII JSON never contains `-`, and a signature that does is made again.
 */
export class TokenFactory {
  readonly #key: KeyObject;

  constructor() {
    this.#key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  }

  make(format: TokenFormat, claims: TokenClaims): string {
    return format === "stateless" ? this.#stateless(claims) : classicToken();
  }

  #stateless(claims: TokenClaims): string {
    const prefix = `ghs_${claims.appId}_`;
    const header = base64url({ alg: "ES256", typ: "JWT" });
    const base = {
      iss: "github-simulator",
      sub: `installation:${claims.installationId}`,
      app: claims.appId,
      iat: Math.floor(claims.issuedAt / 1000),
      exp: Math.floor(claims.expiresAt / 1000),
      jti: randomBytes(12).toString("hex"),
    };
    // An ES256 signature is 64 bytes: 86 base64url characters.
    const fixed = prefix.length + header.length + 2 + 86;
    // base64url of n bytes has ceil(4n/3) characters: pad the JSON to the smallest n that
    // brings the token to the target length.
    const target = statelessTokenLength - fixed;
    const bytes = Math.floor((3 * (target - 1)) / 4) + 1;
    const unpadded = Buffer.byteLength(JSON.stringify({ ...base, pad: "" }));
    const payload = base64url({ ...base, pad: randomAlphanumerics(Math.max(0, bytes - unpadded)) });
    const signingInput = `${header}.${payload}`;
    let signature = "";
    for (let attempt = 0; attempt < 64 && (signature === "" || signature.includes("-")); attempt++) {
      // ECDSA signatures are randomised: signing again gives another one.
      signature = sign("sha256", Buffer.from(signingInput), {
        key: this.#key,
        dsaEncoding: "ieee-p1363",
      }).toString("base64url");
    }
    return `${prefix}${signingInput}.${signature}`;
  }
}

function classicToken(): string {
  return `ghs_${randomAlphanumerics(36)}`;
}

function randomAlphanumerics(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += alphanumerics[randomInt(alphanumerics.length)];
  return s;
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

import { createPublicKey, verify } from "node:crypto";
import { messages } from "./messages.ts";
import type { SimApp } from "./seed.ts";

export type JwtResult = { ok: true; app: SimApp } | { ok: false; status: 401 | 404; message: string };

export interface JwtCheckOptions {
  /** Finds an App by the `iss` claim. */
  findApp: (iss: string | number) => SimApp | undefined;
  /** GitHub's clock (the simulator's, with any injected offset), epoch seconds. */
  nowSeconds: number;
  /** Seconds a JWT's `iat` may lie in the future. GitHub's rule is 0. */
  iatLeewaySeconds?: number;
  /** Longest lifetime GitHub accepts: `exp` at most this far after its clock. */
  maxExpSeconds?: number;
}

/**
 * Validates an App JWT the way GitHub does, in this order: a decodable RS256 JWT → a known
 * issuer (404) → a signature by one of the App's keys → `exp` numeric and in the future →
 * `exp` at most 600 s ahead → `iat` an integer, not in the future. The time checks are
 * explicit: jose's `jwtVerify` allows a future `iat` and a far `exp`.
 */
export function checkAppJwt(authorization: string | undefined, options: JwtCheckOptions): JwtResult {
  const decode = { ok: false, status: 401, message: messages.jwtDecode } as const;
  const jwt = authorization?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
  if (!jwt) return decode;
  const parts = jwt.split(".");
  if (parts.length !== 3) return decode;
  const [h = "", p = "", s = ""] = parts;
  const header = parseSegment(h);
  const payload = parseSegment(p);
  if (!header || !payload || header.alg !== "RS256") return decode;

  const iss = payload.iss;
  const app = typeof iss === "string" || typeof iss === "number" ? options.findApp(iss) : undefined;
  if (!app) return { ok: false, status: 404, message: messages.integrationNotFound };

  const signed = Buffer.from(`${h}.${p}`);
  const signature = Buffer.from(s, "base64url");
  const valid = app.publicKeys.some((pem) => {
    try {
      return verify("RSA-SHA256", signed, createPublicKey(pem), signature);
    } catch {
      return false;
    }
  });
  if (!valid) return decode;

  const now = options.nowSeconds;
  const exp = payload.exp;
  if (typeof exp !== "number" || !Number.isFinite(exp) || exp <= now)
    return { ok: false, status: 401, message: messages.expInvalid };
  if (exp > now + (options.maxExpSeconds ?? 600))
    return { ok: false, status: 401, message: messages.expTooFar };
  const iat = payload.iat;
  if (typeof iat !== "number" || !Number.isInteger(iat) || iat > now + (options.iatLeewaySeconds ?? 0))
    return { ok: false, status: 401, message: messages.iatInvalid };
  return { ok: true, app };
}

function parseSegment(segment: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
    return value && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

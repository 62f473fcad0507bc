import { createPublicKey, verify } from "node:crypto";
import type { SimApp } from "./seed.ts";

/** GitHub's JWT error messages (see shared GITHUB_API.md). */
export const jwtMessages = {
  decode: "A JSON web token could not be decoded",
  notFound: "Integration not found",
  exp: "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
  expTooFar: "'Expiration time' claim ('exp') is too far in the future",
  iat: "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
} as const;

export type JwtResult = { ok: true; app: SimApp } | { ok: false; status: 401 | 404; message: string };

/**
 * Validates an App JWT in GitHub's order: decodable RS256 → known issuer → signature →
 * exp present and future → exp at most 600 s ahead → iat an integer, not in the future.
 * `nowS` is the simulator's clock (with any injected offset), in seconds.
 */
export function checkAppJwt(
  authorization: string | undefined,
  findApp: (iss: string | number) => SimApp | undefined,
  nowS: number,
  iatLeewayS = 0,
): JwtResult {
  const decode = { ok: false, status: 401, message: jwtMessages.decode } as const;
  const m = authorization?.match(/^Bearer\s+(\S+)$/i);
  if (!m?.[1]) return decode;
  const parts = m[1].split(".");
  if (parts.length !== 3) return decode;
  const [h = "", p = "", s = ""] = parts;
  let header: { alg?: unknown };
  let payload: { iss?: unknown; exp?: unknown; iat?: unknown };
  try {
    header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as typeof header;
    payload = JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as typeof payload;
  } catch {
    return decode;
  }
  if (header.alg !== "RS256" || typeof payload !== "object" || payload === null) return decode;
  const iss = payload.iss;
  const app = typeof iss === "string" || typeof iss === "number" ? findApp(iss) : undefined;
  if (!app) return { ok: false, status: 404, message: jwtMessages.notFound };
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
  const exp = payload.exp;
  if (typeof exp !== "number" || !Number.isFinite(exp) || exp <= nowS)
    return { ok: false, status: 401, message: jwtMessages.exp };
  if (exp > nowS + 600) return { ok: false, status: 401, message: jwtMessages.expTooFar };
  const iat = payload.iat;
  if (typeof iat !== "number" || !Number.isInteger(iat) || iat > nowS + iatLeewayS) {
    return { ok: false, status: 401, message: jwtMessages.iat };
  }
  return { ok: true, app };
}

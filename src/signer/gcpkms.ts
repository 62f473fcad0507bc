import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import type { GcpKmsSigner } from "../api/signer.ts";
import { GhatError } from "../core/errors.ts";
import type { Fetch } from "../github/client.ts";
import { createSignerHttp, type SignerAnswer, signerError, transportReason, withDeadline } from "./http.ts";
import type { AppSigner, SignerContext } from "./types.ts";

const what = "Cloud KMS";
export const gcpKmsDefaultEndpoint = "https://cloudkms.googleapis.com";
/** The scope Cloud KMS documents for asymmetricSign and getPublicKey. */
export const cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform";
/** The key algorithms that make RS256 signatures (RSASSA-PKCS1-v1_5 over a SHA-256 digest). */
const rs256Algorithms = /^RSA_SIGN_PKCS1_(2048|3072|4096)_SHA256$/;

/** Where OAuth access tokens come from; google-auth-library's GoogleAuth by default. */
export interface GcpAccessTokenSource {
  getAccessToken(): Promise<string | null | undefined>;
}

export interface GcpKmsSignerOptions {
  /** For tests; node:https (github/transport.ts) by default. */
  fetch?: Fetch | undefined;
  /** PEM CA certificates trusted for the endpoint, in addition to the system roots. */
  caBundle?: string | undefined;
  /** For tests; application default credentials (Workload Identity, metadata server) by default. */
  auth?: GcpAccessTokenSource | undefined;
}

/**
 * Signs with a Cloud KMS asymmetric key version over the REST API: the JWT's signing input is
 * hashed here and only its SHA-256 digest is sent, with its CRC32C; the answer's checksums are
 * verified as Google asks, and a corrupted answer is retried (SignerUnavailable).
 * The key version is always named (the API has no "primary" for asymmetric keys), so a
 * rotation is a change of `keyVersion` and a new signer id.
 * @see https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions/asymmetricSign
 * @see https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions/getPublicKey
 * @see https://cloud.google.com/kms/docs/data-integrity-guidelines
 */
export function createGcpKmsSigner(
  spec: GcpKmsSigner,
  ctx: SignerContext,
  options: GcpKmsSignerOptions = {},
): AppSigner {
  const http = createSignerHttp({
    what,
    timeoutMs: ctx.timeoutMs,
    caBundle: options.caBundle,
    fetch: options.fetch,
  });
  const base = (spec.endpoint ?? gcpKmsDefaultEndpoint).replace(/\/+$/, "");
  // The resource name is the path; each segment is escaped on its own so "/" stays a separator.
  const resource = `${base}/v1/${spec.keyVersion.split("/").map(encodeURIComponent).join("/")}`;
  let auth: Promise<GcpAccessTokenSource> | undefined = options.auth
    ? Promise.resolve(options.auth)
    : undefined;

  async function accessToken(): Promise<string> {
    auth ??= defaultAuth(ctx.env ?? process.env).catch((err: unknown) => {
      auth = undefined;
      throw err;
    });
    const source = await auth;
    let token: string | null | undefined;
    try {
      token = await withDeadline(
        source.getAccessToken(),
        ctx.timeoutMs,
        `${what}: getting a Google access token timed out`,
      );
    } catch (err) {
      throw tokenError(err);
    }
    if (!token) throw new GhatError("SignerDenied", `${what}: the Google credentials gave no access token`);
    return token;
  }

  async function call(method: "GET" | "POST", url: string, json?: unknown): Promise<SignerAnswer> {
    const token = await accessToken();
    const answer = await http.request({
      method,
      url,
      headers: { authorization: `Bearer ${token}` },
      ...(json === undefined ? {} : { json }),
    });
    if (answer.status !== 200) throw classifyGoogleError(answer);
    if (answer.json === null || typeof answer.json !== "object") {
      throw new GhatError("SignerUnavailable", `${what} answered ${answer.status} without a JSON object`);
    }
    return answer;
  }

  return {
    id: `gcpKms:${spec.keyVersion}`,
    kind: "gcpKms",
    async sign(input: Uint8Array): Promise<Uint8Array> {
      const digest = createHash("sha256").update(input).digest();
      const answer = await call("POST", `${resource}:asymmetricSign`, {
        digest: { sha256: digest.toString("base64") },
        // int64 fields are JSON strings in Google's REST mapping.
        digestCrc32c: String(crc32c(digest)),
      });
      const body = answer.json as Record<string, unknown>;
      if (body.name !== spec.keyVersion) {
        throw new GhatError(
          "SignerKeyNotFound",
          `${what} answered for another key version than ${spec.keyVersion}`,
        );
      }
      // Google: a false verifiedDigestCrc32c means the request was corrupted on the way; retry.
      if (body.verifiedDigestCrc32c !== true) {
        throw new GhatError(
          "SignerUnavailable",
          `${what} did not verify the digest's CRC32C; the request is retried`,
        );
      }
      const signature = typeof body.signature === "string" ? decodeBase64(body.signature) : undefined;
      if (!signature || signature.length === 0) {
        throw new GhatError("SignerUnavailable", `${what} answered without a base64 signature`);
      }
      if (!sameCrc(body.signatureCrc32c, crc32c(signature))) {
        throw new GhatError(
          "SignerUnavailable",
          `${what}: the signature does not match its CRC32C (corrupted on the way); the request is retried`,
        );
      }
      return new Uint8Array(signature);
    },
    async publicKey(): Promise<KeyObject> {
      const answer = await call("GET", `${resource}/publicKey`);
      const body = answer.json as Record<string, unknown>;
      if (body.name !== undefined && body.name !== spec.keyVersion) {
        throw new GhatError(
          "SignerKeyNotFound",
          `${what} answered for another key version than ${spec.keyVersion}`,
        );
      }
      const algorithm = typeof body.algorithm === "string" ? body.algorithm : "";
      if (!rs256Algorithms.test(algorithm)) {
        throw new GhatError(
          "SignerKeyNotFound",
          `${what} key version ${spec.keyVersion} is ${/^[A-Z0-9_]{1,64}$/.test(algorithm) ? algorithm : "of an unknown algorithm"}, not RSA_SIGN_PKCS1_*_SHA256 (RS256)`,
        );
      }
      if (typeof body.pem !== "string") {
        throw new GhatError("SignerUnavailable", `${what} answered without a PEM public key`);
      }
      if (body.pemCrc32c !== undefined && !sameCrc(body.pemCrc32c, crc32c(Buffer.from(body.pem, "utf8")))) {
        throw new GhatError(
          "SignerUnavailable",
          `${what}: the public key does not match its CRC32C (corrupted on the way); the request is retried`,
        );
      }
      let key: KeyObject;
      try {
        key = createPublicKey(body.pem);
      } catch {
        throw new GhatError("SignerKeyNotFound", `${what} answered a public key that cannot be read`);
      }
      if (key.asymmetricKeyType !== "rsa") {
        throw new GhatError("SignerKeyNotFound", `${what} key version ${spec.keyVersion} is not an RSA key`);
      }
      return key;
    },
    async close(): Promise<void> {
      await http.close();
    },
  };
}

/**
 * Application default credentials with the cloud-platform scope: GOOGLE_APPLICATION_CREDENTIALS
 * (a service account or workload identity federation file), gcloud's file, then the metadata
 * server (GKE Workload Identity). Imported on first use: operators that sign with PEM keys or
 * another backend never load google-auth-library. It reads process.env itself; the context's
 * GOOGLE_APPLICATION_CREDENTIALS, when given, is passed on explicitly.
 */
async function defaultAuth(env: NodeJS.ProcessEnv): Promise<GcpAccessTokenSource> {
  let lib: typeof import("google-auth-library");
  try {
    lib = await import("google-auth-library");
  } catch {
    throw new GhatError("SignerUnavailable", `${what}: google-auth-library cannot be loaded`);
  }
  const keyFilename = env.GOOGLE_APPLICATION_CREDENTIALS?.trim();
  const googleAuth = new lib.GoogleAuth({
    scopes: [cloudPlatformScope],
    ...(keyFilename ? { keyFilename } : {}),
  });
  return { getAccessToken: () => googleAuth.getAccessToken() };
}

/**
 * Why no access token came: a token endpoint or metadata server that is down, busy or
 * unreachable is retried (SignerUnavailable); no credentials at all, or credentials refused, is
 * SignerDenied. The library's message is not quoted: it may carry a token endpoint's answer.
 */
function tokenError(err: unknown): GhatError {
  if (err instanceof GhatError) return err;
  const e = (err ?? {}) as {
    status?: unknown;
    code?: unknown;
    response?: { status?: unknown };
    message?: unknown;
  };
  const status =
    typeof e.response?.status === "number"
      ? e.response.status
      : typeof e.status === "number"
        ? e.status
        : undefined;
  if (status !== undefined) {
    const code = status >= 500 || status === 429 || status === 408 ? "SignerUnavailable" : "SignerDenied";
    return new GhatError(code, `${what}: the Google token endpoint answered ${status}`, { status });
  }
  const reason = transportReason(err);
  if (reason !== "connection failed" || (typeof e.code === "string" && /^E[A-Z]+$/.test(e.code))) {
    return new GhatError("SignerUnavailable", `${what}: getting a Google access token failed: ${reason}`);
  }
  const noCredentials =
    typeof e.message === "string" && /could not load the default credentials/i.test(e.message);
  return new GhatError(
    "SignerDenied",
    noCredentials
      ? `${what}: no Google credentials found (Workload Identity, GOOGLE_APPLICATION_CREDENTIALS or a metadata server)`
      : `${what}: the Google credentials could not give an access token`,
  );
}

/**
 * Google's errors carry a canonical status beside the HTTP one: PERMISSION_DENIED and
 * UNAUTHENTICATED are denials; NOT_FOUND, FAILED_PRECONDITION (the version is disabled,
 * destroyed or pending) and INVALID_ARGUMENT (a key of another purpose or algorithm, a bad
 * name) mean the named key version cannot sign RS256; 429 and 5xx were handled by the HTTP
 * helper. Anything else (ABORTED, a timeout of the service) is retried.
 * @see https://cloud.google.com/apis/design/errors
 */
function classifyGoogleError(answer: SignerAnswer): GhatError {
  const status = answer.status;
  const err = (answer.json as { error?: { status?: unknown } } | undefined)?.error;
  const canonical = typeof err?.status === "string" ? err.status : "";
  if (
    status === 401 ||
    status === 403 ||
    canonical === "PERMISSION_DENIED" ||
    canonical === "UNAUTHENTICATED"
  ) {
    return signerError("SignerDenied", what, status, answer.json);
  }
  if (
    status === 404 ||
    status === 400 ||
    canonical === "NOT_FOUND" ||
    canonical === "FAILED_PRECONDITION" ||
    canonical === "INVALID_ARGUMENT"
  ) {
    return signerError("SignerKeyNotFound", what, status, answer.json);
  }
  return signerError("SignerUnavailable", what, status, answer.json);
}

/** CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as Cloud KMS checksums requests and answers. */
const crc32cTable = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (crc32cTable[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** A checksum field (an int64, so a JSON string; a number tolerated) equal to `crc`. */
function sameCrc(field: unknown, crc: number): boolean {
  if (typeof field === "number") return field === crc;
  return typeof field === "string" && /^[0-9]{1,20}$/.test(field) && Number(field) === crc;
}

/** Standard base64 (Google's `bytes` fields), strictly; undefined when it is not. */
function decodeBase64(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  return Buffer.from(text, "base64");
}

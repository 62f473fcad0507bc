import { createPublicKey, type KeyObject } from "node:crypto";
import type { VaultTransitSigner } from "../api/signer.ts";
import { GhatError } from "../core/errors.ts";
import type { Fetch } from "../github/client.ts";
import { createSignerHttp, detail, type SignerAnswer, type SignerRequest, signerError } from "./http.ts";
import type { AppSigner, SignerContext } from "./types.ts";

const what = "Vault transit";
/** An RSA-4096 signature is 512 bytes; twice that leaves room and still refuses garbage. */
export const maxVaultSignatureBytes = 1024;
/** Base64 characters of `maxVaultSignatureBytes`: longer text is refused before decoding. */
const maxSignatureChars = Math.ceil(maxVaultSignatureBytes / 3) * 4;
/** Transit key types whose signatures are RS256 with pkcs1v15 and sha2-256. */
const rsaKeyTypes = /^rsa-(2048|3072|4096)$/;
/** A Vault token or SA JWT is sent as a header or JSON string: printable ASCII, bounded. */
const credentialShape = /^[\x21-\x7e]{1,16384}$/;
/** A client token is used for this share of its lease, then ghat logs in again. */
const leaseShare = 2 / 3;
/** Credentials kept for scrubbing messages: the current ones and a few before them. */
const maxRemembered = 8;

export interface VaultTransitSignerOptions {
  /** For tests; node:https (github/transport.ts) by default. */
  fetch?: Fetch | undefined;
}

interface ClientToken {
  value: string;
  /** Epoch ms after which a new one is fetched; Infinity for tokens without a lease. */
  renewAtMs: number;
}

/**
 * Signs with a Vault (or OpenBao) transit RSA key: `POST {mount}/sign/{keyName}` with the
 * JWT's signing input, `sha2-256` and `pkcs1v15`, so Vault hashes and pads exactly as RS256
 * does. The key never leaves Vault; ghat only holds a Vault token: read from a Secret, or
 * obtained through Kubernetes auth with the operator's ServiceAccount token and cached for
 * two thirds of its lease. A 403 may mean the token was revoked or rotated, so the Secret is
 * read again (or ghat logs in again) and the call retried once; never more, so a policy that
 * really denies costs two requests, not a loop.
 * @see https://developer.hashicorp.com/vault/api-docs/secret/transit#sign-data
 * @see https://developer.hashicorp.com/vault/api-docs/auth/kubernetes#login
 */
export function createVaultTransitSigner(
  spec: VaultTransitSigner,
  ctx: SignerContext,
  options: VaultTransitSignerOptions = {},
): AppSigner {
  const http = createSignerHttp({
    what,
    timeoutMs: ctx.timeoutMs,
    caBundle: spec.caBundle,
    fetch: options.fetch,
  });
  const base = spec.address.replace(/\/+$/, "");
  const mount = spec.mount ?? "transit";
  const keyPath = `${base}/v1/${pathOf(mount)}`;
  const keyName = encodeURIComponent(spec.keyName);
  const namespaceHeader: Record<string, string> = spec.namespace
    ? { "x-vault-namespace": spec.namespace }
    : {};
  /** Every credential seen, so no message can carry one even if Vault echoed it. */
  const seen = new Set<string>();
  let token: Promise<ClientToken> | undefined;

  /** The cached client token, or a new one; `fresh` when it was obtained for this call. */
  async function clientToken(): Promise<{ value: string; fresh: boolean }> {
    const cached = token;
    if (cached) {
      const t = await cached.catch(() => undefined);
      if (t && ctx.clock.now() < t.renewAtMs) return { value: t.value, fresh: false };
      if (token === cached) token = undefined;
    }
    // One login (or Secret read) shared by concurrent calls; a failure is not cached.
    if (!token) {
      const started: Promise<ClientToken> = obtainToken().catch((err: unknown) => {
        if (token === started) token = undefined;
        throw err;
      });
      token = started;
    }
    const pending = token;
    return { value: (await pending).value, fresh: true };
  }

  function obtainToken(): Promise<ClientToken> {
    return spec.auth.kubernetes ? kubernetesLogin(spec.auth.kubernetes) : tokenFromSecret();
  }

  async function tokenFromSecret(): Promise<ClientToken> {
    const ref = spec.auth.tokenSecretRef;
    if (!ref) throw new GhatError("InvalidSpec", `${what}: auth needs kubernetes or tokenSecretRef`);
    const key = ref.key ?? "token";
    const value = (await ctx.readSecret(ref.name, key))?.trim();
    if (!value) {
      throw new GhatError(
        "SignerDenied",
        `${what}: the Vault token Secret ${ref.name} has no data key ${key}`,
      );
    }
    if (!credentialShape.test(value)) {
      throw new GhatError("SignerDenied", `${what}: the Vault token in Secret ${ref.name} is not a token`);
    }
    remember(value);
    // The Secret decides its lifetime: it is read again only after Vault refuses it.
    return { value, renewAtMs: Number.POSITIVE_INFINITY };
  }

  async function kubernetesLogin(auth: { role: string; mount?: string }): Promise<ClientToken> {
    const jwt = (await ctx.serviceAccountToken())?.trim();
    if (!jwt) {
      throw new GhatError(
        "SignerDenied",
        `${what}: Kubernetes auth needs the operator's ServiceAccount token, and there is none`,
      );
    }
    remember(jwt);
    const started = ctx.clock.now();
    let answer: SignerAnswer;
    try {
      answer = await http.request({
        method: "POST",
        url: `${base}/v1/auth/${pathOf(auth.mount ?? "kubernetes")}/login`,
        headers: namespaceHeader,
        json: { role: auth.role, jwt },
      });
    } catch (err) {
      throw err instanceof GhatError ? scrub(err) : err;
    }
    if (answer.status !== 200) {
      // Any refusal of a login (unknown role, SA not bound, bad audience) is a denial.
      throw scrub(
        signerError("SignerDenied", `${what} login (role ${auth.role})`, answer.status, answer.json),
      );
    }
    const body = (answer.json as { auth?: { client_token?: unknown; lease_duration?: unknown } } | undefined)
      ?.auth;
    const value = body?.client_token;
    if (typeof value !== "string" || !credentialShape.test(value)) {
      throw new GhatError("SignerUnavailable", `${what} login answered without a client token`);
    }
    remember(value);
    const lease = typeof body?.lease_duration === "number" ? body.lease_duration : 0;
    return {
      value,
      renewAtMs: lease > 0 ? started + lease * 1000 * leaseShare : Number.POSITIVE_INFINITY,
    };
  }

  /**
   * One authenticated request; on 401/403 with a token not obtained for this call, a new
   * token (Secret read again, or a new login) and one more try, never more. A Secret that
   * still holds the refused token is not tried again.
   */
  async function call(op: string, req: Omit<SignerRequest, "headers">): Promise<SignerAnswer> {
    const label = `${what} ${op}`;
    const first = await clientToken();
    const answer = await send(req, first.value);
    if (answer.status === 200) return answer;
    if (!isDenial(answer.status) || first.fresh) throw scrub(classifyVaultError(label, answer));
    await forget(first.value);
    const second = await clientToken();
    if (second.value === first.value) throw scrub(classifyVaultError(label, answer));
    const retried = await send(req, second.value);
    if (retried.status === 200) return retried;
    throw scrub(classifyVaultError(label, retried));
  }

  /** The request with the token (and namespace); the HTTP helper's own errors scrubbed too. */
  async function send(req: Omit<SignerRequest, "headers">, value: string): Promise<SignerAnswer> {
    try {
      return await http.request({ ...req, headers: { "x-vault-token": value, ...namespaceHeader } });
    } catch (err) {
      throw err instanceof GhatError ? scrub(err) : err;
    }
  }

  /** Drops the cached token if it is still the refused one (a concurrent call may have replaced it). */
  async function forget(refused: string): Promise<void> {
    const current = token;
    const t = await current?.catch(() => undefined);
    if (token === current && t?.value === refused) token = undefined;
  }

  /** Keeps the last few credentials for `scrub`; older ones are long expired. */
  function remember(value: string): void {
    seen.delete(value);
    seen.add(value);
    if (seen.size > maxRemembered) seen.delete(seen.values().next().value as string);
  }

  /** The error with every credential seen replaced, whatever Vault chose to echo. */
  function scrub(err: GhatError): GhatError {
    let message = err.message;
    for (const s of seen) message = message.split(s).join("[REDACTED]");
    if (message === err.message) return err;
    return new GhatError(err.code, message, err.status === undefined ? {} : { status: err.status });
  }

  const versionLabel = spec.keyVersion === undefined ? "latest" : `v${spec.keyVersion}`;
  return {
    id: `vaultTransit:${base} namespace=${spec.namespace ?? ""} mount=${mount} key=${spec.keyName} version=${versionLabel}`,
    kind: "vaultTransit",
    async sign(input: Uint8Array): Promise<Uint8Array> {
      const answer = await call(`sign/${spec.keyName}`, {
        method: "POST",
        url: `${keyPath}/sign/${keyName}`,
        json: {
          input: Buffer.from(input).toString("base64"),
          hash_algorithm: "sha2-256",
          signature_algorithm: "pkcs1v15",
          ...(spec.keyVersion === undefined ? {} : { key_version: spec.keyVersion }),
        },
      });
      const signature = (answer.json as { data?: { signature?: unknown } } | undefined)?.data?.signature;
      return parseSignature(signature, spec.keyVersion);
    },
    async publicKey(): Promise<KeyObject> {
      const answer = await call(`keys/${spec.keyName}`, { method: "GET", url: `${keyPath}/keys/${keyName}` });
      return publicKeyOf(answer.json, spec.keyName, spec.keyVersion);
    },
    async close(): Promise<void> {
      token = undefined;
      seen.clear();
      await http.close();
    },
  };
}

/** A mount path with each segment escaped on its own, so "/" stays a separator. */
function pathOf(mount: string): string {
  return mount.split("/").map(encodeURIComponent).join("/");
}

/**
 * `vault:v<N>:<base64>` to the raw signature, refusing anything else: a signature of another
 * version than the one asked for, text longer than an RSA-4096 signature could need (checked
 * before any regular expression or decoding runs on it), or base64 that is not strict.
 */
export function parseSignature(signature: unknown, keyVersion?: number): Uint8Array {
  if (typeof signature !== "string" || signature.length > maxSignatureChars + 32) {
    throw new GhatError(
      "SignerUnavailable",
      `${what} answered without a signature of at most ${maxVaultSignatureBytes} bytes`,
    );
  }
  const m = /^vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})$/.exec(signature);
  const encoded = m?.[2];
  if (!m || encoded === undefined || encoded.length % 4 !== 0 || encoded.length > maxSignatureChars) {
    throw new GhatError(
      "SignerUnavailable",
      `${what} answered a signature not of the form vault:v<N>:<base64>`,
    );
  }
  if (keyVersion !== undefined && Number(m[1]) !== keyVersion) {
    throw new GhatError(
      "SignerUnavailable",
      `${what} answered a signature of key version ${m[1]}, not the configured ${keyVersion}`,
    );
  }
  const bytes = Buffer.from(encoded, "base64");
  if (bytes.length === 0 || bytes.length > maxVaultSignatureBytes) {
    throw new GhatError("SignerUnavailable", `${what} answered a signature of ${bytes.length} bytes`);
  }
  return new Uint8Array(bytes);
}

/**
 * The PEM public key of the configured (or latest) version from a `keys/{name}` answer. Keys
 * of any other type than RSA (AES, HMAC, ECDSA, Ed25519) cannot make RS256 signatures.
 */
function publicKeyOf(json: unknown, name: string, keyVersion: number | undefined): KeyObject {
  const data = (json as { data?: Record<string, unknown> } | undefined)?.data;
  const type = typeof data?.type === "string" ? data.type : "";
  if (!rsaKeyTypes.test(type)) {
    const shown = /^[a-z0-9-]{1,32}$/.test(type) ? type : "of an unknown type";
    throw new GhatError(
      "SignerKeyNotFound",
      `${what} key ${name} is ${shown}, not rsa-2048/3072/4096 (RS256)`,
    );
  }
  const version = keyVersion ?? data?.latest_version;
  const keys = data?.keys;
  const entry =
    typeof version === "number" && keys !== null && typeof keys === "object"
      ? (keys as Record<string, unknown>)[String(version)]
      : undefined;
  const pem = (entry as { public_key?: unknown } | undefined)?.public_key;
  if (typeof pem !== "string" || pem === "") {
    throw new GhatError(
      "SignerKeyNotFound",
      `${what} key ${name} has no public key for version ${typeof version === "number" ? version : "latest"}`,
    );
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new GhatError("SignerKeyNotFound", `${what} answered a public key for ${name} that cannot be read`);
  }
  if (key.asymmetricKeyType !== "rsa") {
    throw new GhatError("SignerKeyNotFound", `${what} key ${name} is not an RSA key`);
  }
  return key;
}

/** Vault's answer to a missing, expired, revoked or under-privileged token. */
function isDenial(status: number): boolean {
  return status === 401 || status === 403;
}

/**
 * Vault's status codes: 401/403 are denials (bad token, or a policy without `update` on
 * `sign/{key}` / `read` on `keys/{key}`); 404 is a missing key (or mount). Transit answers
 * 400 for a key it does not have ("signing key not found"), a version it does not have and a
 * key type that cannot sign pkcs1v15; those are the key's problem. 412 (a standby not yet
 * consistent) and 408 are retried; 5xx and 429 were handled by the HTTP helper.
 */
export function classifyVaultError(label: string, answer: SignerAnswer): GhatError {
  const status = answer.status;
  if (isDenial(status)) return signerError("SignerDenied", label, status, answer.json);
  if (status === 408 || status === 412) return signerError("SignerUnavailable", label, status, answer.json);
  if (status === 400 && /permission denied|token|unauthori[sz]ed/i.test(detail(answer.json))) {
    return signerError("SignerDenied", label, status, answer.json);
  }
  return signerError("SignerKeyNotFound", label, status, answer.json);
}

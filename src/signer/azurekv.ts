import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import type { AzureKeyVaultSigner } from "../api/signer.ts";
import { GhatError } from "../core/errors.ts";
import type { Fetch } from "../github/client.ts";
import { createSignerHttp, type SignerAnswer, signerError, transportReason, withDeadline } from "./http.ts";
import type { AppSigner, SignerContext } from "./types.ts";

const what = "Azure Key Vault";
/** The Key Vault REST API version every request names. */
export const azureKeyVaultApiVersion = "7.5";

/** An Entra ID token source: `@azure/identity`'s TokenCredential has this shape. */
export interface AzureTokenCredential {
  getToken(
    scopes: string | string[],
    options?: { abortSignal?: AbortSignal },
  ): Promise<{ token: string } | null>;
}

export interface AzureKeyVaultSignerOptions {
  /** For tests; node:https (github/transport.ts) by default. */
  fetch?: Fetch | undefined;
  /** PEM CA certificates trusted for the vault, in addition to the system roots. */
  caBundle?: string | undefined;
  /** For tests; workload identity (or DefaultAzureCredential's chain) by default. */
  credential?: AzureTokenCredential | undefined;
}

/**
 * Signs with an Azure Key Vault (or Managed HSM) RSA key over the REST API: the JWT's signing
 * input is hashed here and only its SHA-256 digest is sent, with alg RS256.
 *
 * REST rather than `@azure/keyvault-keys`' CryptographyClient: the SDK's pipeline retries on
 * its own (several tries with backoff, against the operator's single per-call deadline), follows
 * redirects (ghat never does), reads answers without a size cap, and runs Key Vault's challenge
 * flow (an unauthenticated first request, then a token for the scope the 401 names, checked
 * against the vault's domain unless `disableChallengeResourceVerification`): an extra round
 * trip per fresh client, and a test vault on 127.0.0.1 only with that check switched off. The
 * REST calls below are the two the SDK makes, through the bounded helper every signer shares;
 * `@azure/identity` still provides the tokens.
 *
 * With `keyVersion` unset, each signature first reads the key's current version (GET key
 * without a version, which Key Vault documents as "the latest version"), then signs with that
 * version by name: the sign operation documents its version as required. A rotation is thus
 * picked up at the next signature.
 * @see https://learn.microsoft.com/en-us/rest/api/keyvault/keys/sign/sign
 * @see https://learn.microsoft.com/en-us/rest/api/keyvault/keys/get-key/get-key
 * @see https://learn.microsoft.com/en-us/azure/key-vault/general/rest-error-codes
 */
export function createAzureKeyVaultSigner(
  spec: AzureKeyVaultSigner,
  ctx: SignerContext,
  options: AzureKeyVaultSignerOptions = {},
): AppSigner {
  const http = createSignerHttp({
    what,
    timeoutMs: ctx.timeoutMs,
    caBundle: options.caBundle,
    fetch: options.fetch,
  });
  const vault = new URL(spec.vaultUrl);
  const base = spec.vaultUrl.replace(/\/+$/, "");
  const keyUrl = `${base}/keys/${encodeURIComponent(spec.keyName)}`;
  const version = spec.keyVersion ? spec.keyVersion : undefined;
  const scope = tokenScope(vault.hostname);
  let credential: Promise<AzureTokenCredential> | undefined = options.credential
    ? Promise.resolve(options.credential)
    : undefined;

  async function accessToken(): Promise<string> {
    credential ??= defaultCredential(ctx.env ?? process.env).catch((err: unknown) => {
      credential = undefined;
      throw err;
    });
    const source = await credential;
    let token: { token: string } | null;
    try {
      token = await withDeadline(
        source.getToken(scope, { abortSignal: AbortSignal.timeout(ctx.timeoutMs) }),
        ctx.timeoutMs,
        `${what}: getting an Entra ID token timed out`,
      );
    } catch (err) {
      throw tokenError(err);
    }
    if (!token?.token)
      throw new GhatError("SignerDenied", `${what}: the Azure credential gave no access token`);
    return token.token;
  }

  async function call(
    method: "GET" | "POST",
    path: string,
    json?: unknown,
  ): Promise<Record<string, unknown>> {
    const token = await accessToken();
    const answer = await http.request({
      method,
      url: `${keyUrl}${path}?api-version=${azureKeyVaultApiVersion}`,
      headers: { authorization: `Bearer ${token}` },
      ...(json === undefined ? {} : { json }),
    });
    if (answer.status !== 200) throw classifyAzureError(answer);
    if (answer.json === null || typeof answer.json !== "object") {
      throw new GhatError("SignerUnavailable", `${what} answered ${answer.status} without a JSON object`);
    }
    return answer.json as Record<string, unknown>;
  }

  /** The key (GET key), checked to be an enabled RSA key that may sign; its version from its kid. */
  async function getKey(): Promise<{ version: string; key: Record<string, unknown> }> {
    const body = await call("GET", version ? `/${encodeURIComponent(version)}` : "");
    const key = body.key;
    if (key === null || typeof key !== "object") {
      throw new GhatError("SignerUnavailable", `${what} answered the key without its JSON web key`);
    }
    const jwk = key as Record<string, unknown>;
    const kidVersion = versionOf(jwk.kid);
    if (kidVersion === undefined || (version !== undefined && kidVersion !== version)) {
      throw new GhatError("SignerKeyNotFound", `${what} answered for another key than ${spec.keyName}`);
    }
    if (jwk.kty !== "RSA" && jwk.kty !== "RSA-HSM") {
      throw new GhatError("SignerKeyNotFound", `${what} key ${spec.keyName} is not an RSA key`);
    }
    if (!Array.isArray(jwk.key_ops) || !jwk.key_ops.includes("sign")) {
      throw new GhatError(
        "SignerKeyNotFound",
        `${what} key ${spec.keyName} does not allow the sign operation`,
      );
    }
    const attributes = body.attributes as Record<string, unknown> | undefined;
    if (attributes && attributes.enabled === false) {
      throw new GhatError(
        "SignerKeyNotFound",
        `${what} key ${spec.keyName} version ${kidVersion} is disabled`,
      );
    }
    return { version: kidVersion, key: jwk };
  }

  /** The version segment of a kid naming this vault's key (`{vault}/keys/{name}/{version}`). */
  function versionOf(kid: unknown): string | undefined {
    if (typeof kid !== "string") return undefined;
    let url: URL;
    try {
      url = new URL(kid);
    } catch {
      return undefined;
    }
    if (url.host.toLowerCase() !== vault.host.toLowerCase()) return undefined;
    const parts = url.pathname.split("/");
    if (parts.length !== 4 || parts[1] !== "keys" || parts[2]?.toLowerCase() !== spec.keyName.toLowerCase()) {
      return undefined;
    }
    return /^[A-Za-z0-9]{1,64}$/.test(parts[3] ?? "") ? parts[3] : undefined;
  }

  return {
    id: `azureKeyVault:${base}/keys/${spec.keyName}${version ? `/${version}` : ""}`,
    kind: "azureKeyVault",
    async sign(input: Uint8Array): Promise<Uint8Array> {
      const signingVersion = version ?? (await getKey()).version;
      const digest = createHash("sha256").update(input).digest();
      const body = await call("POST", `/${encodeURIComponent(signingVersion)}/sign`, {
        alg: "RS256",
        value: digest.toString("base64url"),
      });
      if (versionOf(body.kid) !== signingVersion) {
        throw new GhatError(
          "SignerKeyNotFound",
          `${what} signed with another key than ${spec.keyName}/${signingVersion}`,
        );
      }
      const signature = typeof body.value === "string" ? decodeBase64url(body.value) : undefined;
      if (!signature || signature.length === 0) {
        throw new GhatError("SignerUnavailable", `${what} answered without a base64url signature`);
      }
      return new Uint8Array(signature);
    },
    async publicKey(): Promise<KeyObject> {
      const { key } = await getKey();
      if (typeof key.n !== "string" || typeof key.e !== "string") {
        throw new GhatError("SignerUnavailable", `${what} answered the key without its modulus and exponent`);
      }
      try {
        return createPublicKey({ key: { kty: "RSA", n: key.n, e: key.e }, format: "jwk" });
      } catch {
        throw new GhatError("SignerKeyNotFound", `${what} answered a public key that cannot be read`);
      }
    },
    async close(): Promise<void> {
      await http.close();
    },
  };
}

/**
 * The token audience: Key Vault's resource in the vault's cloud (public, China, US
 * Government), or Managed HSM's; https://vault.azure.net for any other host.
 */
function tokenScope(host: string): string {
  const h = host.toLowerCase();
  for (const resource of [
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
    "managedhsm.azure.net",
    "managedhsm.azure.cn",
    "managedhsm.usgovcloudapi.net",
  ]) {
    if (h.endsWith(`.${resource}`)) return `https://${resource}/.default`;
  }
  return "https://vault.azure.net/.default";
}

/**
 * Azure workload identity when its webhook's variables are there (AZURE_FEDERATED_TOKEN_FILE,
 * AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_AUTHORITY_HOST), DefaultAzureCredential's chain
 * otherwise. Imported on first use: operators that sign otherwise never load @azure/identity.
 */
async function defaultCredential(env: NodeJS.ProcessEnv): Promise<AzureTokenCredential> {
  let identity: typeof import("@azure/identity");
  try {
    identity = await import("@azure/identity");
  } catch {
    throw new GhatError("SignerUnavailable", `${what}: @azure/identity cannot be loaded`);
  }
  const tokenFilePath = env.AZURE_FEDERATED_TOKEN_FILE?.trim();
  if (tokenFilePath) {
    try {
      return new identity.WorkloadIdentityCredential({
        tokenFilePath,
        ...(env.AZURE_TENANT_ID ? { tenantId: env.AZURE_TENANT_ID } : {}),
        ...(env.AZURE_CLIENT_ID ? { clientId: env.AZURE_CLIENT_ID } : {}),
        ...(env.AZURE_AUTHORITY_HOST ? { authorityHost: env.AZURE_AUTHORITY_HOST } : {}),
        ...(privateAuthority(env.AZURE_AUTHORITY_HOST) ? { disableInstanceDiscovery: true } : {}),
      });
    } catch {
      throw new GhatError(
        "SignerDenied",
        `${what}: workload identity is incomplete (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE)`,
      );
    }
  }
  return new identity.DefaultAzureCredential();
}

/**
 * An authority host that is not one of Microsoft's clouds (Azure Stack, a private cloud, a
 * test's token endpoint). MSAL asks login.microsoftonline.com whether it knows such a host
 * ("instance discovery") and refuses it when that question cannot be asked, as in an air-gapped
 * cluster; the authority comes from the operator's own environment, so it is trusted as given.
 * Microsoft's own hosts keep MSAL's built-in metadata.
 */
function privateAuthority(authorityHost: string | undefined): boolean {
  if (!authorityHost?.trim()) return false;
  let host: string;
  try {
    host = new URL(authorityHost).hostname.toLowerCase();
  } catch {
    return false;
  }
  return !/(^|\.)(microsoftonline\.com|microsoftonline\.us|chinacloudapi\.cn|microsoft\.com|windows\.net|microsoftonline\.de)$/.test(
    host,
  );
}

/**
 * Why no token came: Entra ID down, busy or unreachable is retried (SignerUnavailable);
 * nothing configured (CredentialUnavailableError) or a refused assertion is SignerDenied. The
 * library's message is not quoted: it may carry the token endpoint's answer.
 */
function tokenError(err: unknown): GhatError {
  if (err instanceof GhatError) return err;
  const e = (err ?? {}) as {
    name?: unknown;
    statusCode?: unknown;
    status?: unknown;
    code?: unknown;
    message?: unknown;
  };
  const status =
    typeof e.statusCode === "number" ? e.statusCode : typeof e.status === "number" ? e.status : undefined;
  if (status !== undefined && status !== 0) {
    const code = status >= 500 || status === 429 || status === 408 ? "SignerUnavailable" : "SignerDenied";
    return new GhatError(code, `${what}: the Entra ID token endpoint answered ${status}`, { status });
  }
  const reason = transportReason(err);
  if (reason !== "connection failed" || e.code === "REQUEST_SEND_ERROR") {
    return new GhatError(
      "SignerUnavailable",
      `${what}: getting an Entra ID token failed: ${reason === "connection failed" ? "the token endpoint did not answer" : reason}`,
    );
  }
  // MSAL reports an authority it cannot reach (discovery or token request) through the
  // credential's message only: `endpoints_resolution_error`, `network_error`, a socket code.
  const message = typeof e.message === "string" ? e.message : "";
  if (
    /\b(endpoints_resolution_error|network_error|no_network_connectivity|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|REQUEST_SEND_ERROR)\b/.test(
      message,
    )
  ) {
    return new GhatError("SignerUnavailable", `${what}: Entra ID could not be reached for a token`);
  }
  if (e.name === "CredentialUnavailableError" || e.name === "AggregateAuthenticationError") {
    return new GhatError(
      "SignerDenied",
      `${what}: no Azure credential is available (workload identity: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE)`,
    );
  }
  return new GhatError("SignerDenied", `${what}: the Azure credential could not give an access token`);
}

/**
 * Key Vault's errors: 401 (no or bad token, AKV10000-series codes such as AKV10032 wrong
 * issuer) and 403 (access policy or RBAC) are denials, except a disabled key or one whose
 * key_ops leave out sign (403 "Operation sign is not allowed on a disabled key"), which like 404 KeyNotFound and 400 BadParameter (a key of another type, an
 * operation the key does not allow) means the key cannot sign RS256. 429 and 5xx were handled
 * by the HTTP helper; anything else is retried.
 * @see https://learn.microsoft.com/en-us/azure/key-vault/general/rest-error-codes
 */
function classifyAzureError(answer: SignerAnswer): GhatError {
  const status = answer.status;
  const err = (
    answer.json as { error?: { code?: unknown; message?: unknown; innererror?: { code?: unknown } } }
  )?.error;
  const inner = typeof err?.innererror?.code === "string" ? err.innererror.code : "";
  const message = typeof err?.message === "string" ? err.message : "";
  if (
    status === 403 &&
    (inner === "KeyDisabled" ||
      inner === "KeyOperationForbidden" ||
      /\bnot (allowed|permitted) on (a disabled|this) key\b/i.test(message))
  ) {
    return signerError("SignerKeyNotFound", what, status, answer.json);
  }
  if (status === 401 || status === 403) return signerError("SignerDenied", what, status, answer.json);
  if (status === 404 || status === 400) return signerError("SignerKeyNotFound", what, status, answer.json);
  return signerError("SignerUnavailable", what, status, answer.json);
}

/** base64url without padding (JSON web key and Key Vault `value` fields), strictly. */
function decodeBase64url(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  return Buffer.from(text, "base64url");
}

import { execFileSync } from "node:child_process";
import { constants, generateKeyPairSync, type KeyObject, privateEncrypt, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A local Azure Key Vault over https, written from Microsoft's published REST reference and
 * strict about what it accepts, with a Microsoft Entra ID token endpoint beside it for
 * workload identity (client credentials with a federated client assertion):
 * - sign: https://learn.microsoft.com/en-us/rest/api/keyvault/keys/sign/sign
 *   (POST {vault}/keys/{name}/{version}/sign?api-version=7.5, body KeySignParameters
 *   {alg, value: base64url digest}; answer KeyOperationResult {kid, value: base64url})
 * - get key: https://learn.microsoft.com/en-us/rest/api/keyvault/keys/get-key/get-key
 *   (GET {vault}/keys/{name}/{version}?api-version=7.5, version optional: the latest; answer
 *   KeyBundle {key: JsonWebKey {kid, kty, key_ops, n, e}, attributes {enabled, …}})
 * - algorithms: https://learn.microsoft.com/en-us/rest/api/keyvault/keys/sign/sign#jsonwebkeysignaturealgorithm
 * - errors: https://learn.microsoft.com/en-us/azure/key-vault/general/rest-error-codes
 *   ({error: {code, message, innererror?}}; 401 with a WWW-Authenticate Bearer challenge)
 * - token endpoint: https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow#third-case-access-token-request-with-a-federated-credential
 *   and OpenID discovery ({authority}/v2.0/.well-known/openid-configuration)
 * Signatures are real: RSASSA-PKCS1-v1_5 over the given SHA-256 digest with node:crypto.
 */
export interface FakeKeyVault {
  /** https://127.0.0.1:PORT: the vault URL, and the Entra authority host. */
  url: string;
  /** The server's self-signed certificate (PEM), for caBundle. */
  ca: string;
  tenantId: string;
  clientId: string;
  /** The federated token (the ServiceAccount token) the token endpoint accepts as assertion. */
  federatedToken: string;
  /** The access token the token endpoint issues and the vault accepts. */
  token: string;
  requests: { method: string; path: string; body: unknown; authorization: string | undefined }[];
  /** Token endpoint requests (form fields, the assertion left out). */
  tokenRequests: Record<string, string>[];
  /** Creates a key, or a new version of it (a rotation); returns the version. */
  addVersion(name: string, options?: { kty?: "RSA" | "RSA-HSM" | "EC"; keyOps?: string[] }): string;
  disable(name: string, version: string): void;
  publicKeyOf(name: string, version: string): KeyObject;
  failNext(status: 429 | 500 | 503, times?: number): void;
  /** Refuse the (valid) token: 403 Forbidden, as an identity without the sign permission gets. */
  deny: boolean;
  hijackNext(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): void;
  tamperNext(alter: (answer: Record<string, unknown>) => void): void;
  close(): Promise<void>;
}

interface Version {
  kty: "RSA" | "RSA-HSM" | "EC";
  keyOps: string[];
  enabled: boolean;
  created: number;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** DER prefix of DigestInfo for SHA-256 (RFC 8017 §9.2 note 1). */
const sha256DigestInfo = Buffer.from("3031300d060960864801650304020105000420", "hex");
const apiVersions = new Set(["7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01"]);
/** JsonWebKeySignatureAlgorithm, as the reference lists it. */
const algorithms = new Set([
  "PS256",
  "PS384",
  "PS512",
  "RS256",
  "RS384",
  "RS512",
  "RSNULL",
  "ES256",
  "ES384",
  "ES512",
  "ES256K",
  "HS256",
  "HS384",
  "HS512",
]);
const digestLengths: Record<string, number> = {
  RS256: 32,
  PS256: 32,
  ES256: 32,
  ES256K: 32,
  RS384: 48,
  PS384: 48,
  ES384: 48,
  RS512: 64,
  PS512: 64,
  ES512: 64,
};
let sharedKeys: { privateKey: KeyObject; publicKey: KeyObject }[] = [];

function rsaKey(index: number): { privateKey: KeyObject; publicKey: KeyObject } {
  while (sharedKeys.length <= index % 3) {
    sharedKeys = [...sharedKeys, generateKeyPairSync("rsa", { modulusLength: 2048 })];
  }
  return sharedKeys[index % 3] as { privateKey: KeyObject; publicKey: KeyObject };
}

/** A self-signed certificate for 127.0.0.1, made by openssl in a temporary directory. */
function selfSigned(): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), "ghat-akv-"));
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "c.pem",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
      ],
      { cwd: dir, stdio: "ignore" },
    );
    return { cert: readFileSync(join(dir, "c.pem"), "utf8"), key: readFileSync(join(dir, "k.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function startFakeKeyVault(): Promise<FakeKeyVault> {
  const keys = new Map<string, Map<string, Version>>();
  const failures: number[] = [];
  const hijacks: ((req: IncomingMessage, res: ServerResponse, body: string) => void)[] = [];
  const tampers: ((answer: Record<string, unknown>) => void)[] = [];
  const tls = selfSigned();
  let made = 0;
  let clock = 0;

  const fake: FakeKeyVault = {
    url: "",
    ca: tls.cert,
    tenantId: "72f988bf-86f1-41af-91ab-2d7cd011db47",
    clientId: "0b7e8c4e-1d2a-4f3e-9a55-6a0f0d2c9e11",
    federatedToken: `eyJhbGciOiJSUzI1NiJ9.${randomBytes(24).toString("base64url")}.sig`,
    token: `eyJ0eXAiOiJKV1QifQ.${randomBytes(32).toString("base64url")}.fake`,
    requests: [],
    tokenRequests: [],
    deny: false,
    addVersion(name, options = {}) {
      const version = randomBytes(16).toString("hex");
      const pair = options.kty === "EC" ? generateKeyPairSync("ec", { namedCurve: "P-256" }) : rsaKey(made++);
      const versions = keys.get(name) ?? new Map<string, Version>();
      versions.set(version, {
        kty: options.kty ?? "RSA",
        keyOps: options.keyOps ?? ["sign", "verify", "wrapKey", "unwrapKey", "encrypt", "decrypt"],
        enabled: true,
        created: ++clock,
        privateKey: pair.privateKey,
        publicKey: pair.publicKey,
      });
      keys.set(name, versions);
      return version;
    },
    disable(name, version) {
      const v = keys.get(name)?.get(version);
      if (v) v.enabled = false;
    },
    publicKeyOf(name, version) {
      const v = keys.get(name)?.get(version);
      if (!v) throw new Error(`no key ${name}/${version}`);
      return v.publicKey;
    },
    failNext(status, times = 1) {
      for (let i = 0; i < times; i++) failures.push(status);
    },
    hijackNext(handler) {
      hijacks.push(handler);
    },
    tamperNext(alter) {
      tampers.push(alter);
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const kvError = (res: ServerResponse, status: number, code: string, message: string, inner?: string) => {
    res.writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "x-ms-keyvault-service-version": "1.9.0.0",
    });
    res.end(JSON.stringify({ error: { code, message, ...(inner ? { innererror: { code: inner } } : {}) } }));
  };

  function entra(req: IncomingMessage, res: ServerResponse, url: URL, raw: string) {
    const authority = `${fake.url}/${fake.tenantId}`;
    if (req.method === "GET" && url.pathname === `/${fake.tenantId}/v2.0/.well-known/openid-configuration`) {
      return json(res, {
        token_endpoint: `${authority}/oauth2/v2.0/token`,
        authorization_endpoint: `${authority}/oauth2/v2.0/authorize`,
        device_authorization_endpoint: `${authority}/oauth2/v2.0/devicecode`,
        end_session_endpoint: `${authority}/oauth2/v2.0/logout`,
        jwks_uri: `${fake.url}/${fake.tenantId}/discovery/v2.0/keys`,
        issuer: `${authority}/v2.0`,
        token_endpoint_auth_methods_supported: [
          "client_secret_post",
          "private_key_jwt",
          "client_secret_basic",
        ],
        response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
        scopes_supported: ["openid", "profile", "email", "offline_access"],
        subject_types_supported: ["pairwise"],
        id_token_signing_alg_values_supported: ["RS256"],
        tenant_region_scope: "EU",
      });
    }
    if (req.method === "POST" && url.pathname === `/${fake.tenantId}/oauth2/v2.0/token`) {
      const form = Object.fromEntries(new URLSearchParams(raw));
      const { client_assertion: assertion, ...logged } = form;
      fake.tokenRequests.push(logged);
      const oauthError = (status: number, error: string, description: string) => {
        res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
        res.end(
          JSON.stringify({
            error,
            error_description: description,
            error_codes: [Number(/AADSTS(\d+)/.exec(description)?.[1] ?? 0)],
            timestamp: new Date().toISOString(),
          }),
        );
      };
      if (form.grant_type !== "client_credentials")
        return oauthError(
          400,
          "unsupported_grant_type",
          "AADSTS70003: The app requested an unsupported grant type.",
        );
      if (form.client_id !== fake.clientId)
        return oauthError(
          400,
          "unauthorized_client",
          `AADSTS700016: Application with identifier '${form.client_id}' was not found in the directory.`,
        );
      if (form.client_assertion_type !== "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        return oauthError(
          400,
          "invalid_request",
          "AADSTS900144: The request body must contain the following parameter: 'client_assertion_type'.",
        );
      if (assertion !== fake.federatedToken)
        return oauthError(
          400,
          "invalid_client",
          "AADSTS700211: No matching federated identity record found for presented assertion issuer.",
        );
      if (form.scope !== "https://vault.azure.net/.default")
        return oauthError(
          400,
          "invalid_scope",
          `AADSTS70011: The provided value for the input parameter 'scope' is not valid.`,
        );
      return json(res, {
        token_type: "Bearer",
        expires_in: 3599,
        ext_expires_in: 3599,
        access_token: fake.token,
      });
    }
    res.writeHead(404).end();
  }

  function vault(req: IncomingMessage, res: ServerResponse, url: URL, raw: string) {
    let body: unknown;
    try {
      body = raw === "" ? undefined : JSON.parse(raw);
    } catch {
      return kvError(res, 400, "BadParameter", "The request body is not valid JSON.");
    }
    fake.requests.push({
      method: req.method ?? "",
      path: `${url.pathname}${url.search}`,
      body,
      authorization: req.headers.authorization,
    });
    const hijack = hijacks.shift();
    if (hijack) return hijack(req, res, raw);
    const auth = req.headers.authorization;
    if (!auth?.startsWith("Bearer ") || auth.slice(7) !== fake.token) {
      res.setHeader(
        "www-authenticate",
        `Bearer authorization="${fake.url}/${fake.tenantId}", resource="https://vault.azure.net"`,
      );
      return auth
        ? kvError(
            res,
            401,
            "Unauthorized",
            `AKV10032: Invalid issuer. Expected one of https://sts.windows.net/${fake.tenantId}/, found https://sts.windows.net/00000000-0000-0000-0000-000000000000/.`,
          )
        : kvError(res, 401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.");
    }
    const failure = failures.shift();
    if (failure === 429) {
      res.setHeader("retry-after", "1");
      return kvError(res, 429, "Throttled", "Request was not allowed because the vault is being throttled.");
    }
    if (failure)
      return kvError(
        res,
        failure,
        failure === 503 ? "ServiceUnavailable" : "InternalServerError",
        "The service encountered an internal error.",
      );
    const apiVersion = url.searchParams.get("api-version");
    if (apiVersion === null)
      return kvError(res, 400, "BadParameter", "The 'api-version' query parameter is missing.");
    if (!apiVersions.has(apiVersion))
      return kvError(
        res,
        400,
        "BadParameter",
        `The specified version (${apiVersion}) is not recognized. Consider using the latest supported version (7.5).`,
      );
    for (const key of url.searchParams.keys()) {
      if (key !== "api-version")
        return kvError(res, 400, "BadParameter", `Unknown query parameter '${key}'.`);
    }
    // keys/{name}, keys/{name}/, keys/{name}/{version}, keys/{name}/{version}/sign
    const m = /^\/keys\/([A-Za-z0-9-]{1,127})(?:\/([A-Za-z0-9]{0,64}))?(\/sign)?$/.exec(url.pathname);
    if (!m) return kvError(res, 404, "NotFound", "The requested resource was not found.");
    const [, name = "", versionPart = "", signPart] = m;
    if (signPart && req.method !== "POST")
      return kvError(res, 405, "MethodNotAllowed", "The requested method is not allowed.");
    if (!signPart && req.method !== "GET")
      return kvError(res, 405, "MethodNotAllowed", "The requested method is not allowed.");
    if (signPart && versionPart === "")
      return kvError(res, 404, "NotFound", "The requested resource was not found.");
    if (fake.deny) {
      return kvError(
        res,
        403,
        "Forbidden",
        `Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=${fake.clientId}\r\nAction: 'Microsoft.KeyVault/vaults/keys/${signPart ? "sign/action" : "read"}'\r\nAssignment: (not found)\r\n`,
        "ForbiddenByRbac",
      );
    }
    const versions = keys.get(name);
    const version = versionPart
      ? versions?.get(versionPart)
      : [...(versions?.values() ?? [])].sort((a, b) => b.created - a.created)[0];
    const versionId = versionPart || [...(versions?.entries() ?? [])].find(([, v]) => v === version)?.[0];
    if (!version || !versionId) {
      return kvError(
        res,
        404,
        "KeyNotFound",
        `A key with (name/id) ${name}${versionPart ? `/${versionPart}` : ""} was not found in this key vault.`,
      );
    }
    const kid = `${fake.url}/keys/${name}/${versionId}`;
    if (!signPart) {
      const jwk = version.publicKey.export({ format: "jwk" });
      return json(res, {
        key: {
          kid,
          kty: version.kty,
          key_ops: version.keyOps,
          ...(version.kty === "EC" ? { crv: jwk.crv, x: jwk.x, y: jwk.y } : { n: jwk.n, e: jwk.e }),
        },
        attributes: {
          enabled: version.enabled,
          created: 1700000000,
          updated: 1700000000,
          recoveryLevel: "Recoverable+Purgeable",
          recoverableDays: 90,
          exportable: false,
        },
      });
    }
    if (!version.enabled)
      return kvError(
        res,
        403,
        "Forbidden",
        "Operation sign is not allowed on a disabled key.",
        "KeyDisabled",
      );
    if (!(req.headers["content-type"] ?? "").startsWith("application/json"))
      return kvError(res, 400, "BadParameter", "The request content type must be application/json.");
    if (body === null || typeof body !== "object" || Array.isArray(body))
      return kvError(res, 400, "BadParameter", "The request body must be a JSON object.");
    const params = body as Record<string, unknown>;
    for (const field of Object.keys(params)) {
      if (field !== "alg" && field !== "value")
        return kvError(res, 400, "BadParameter", `Property '${field}' is not a member of KeySignParameters.`);
    }
    if (typeof params.alg !== "string" || !algorithms.has(params.alg))
      return kvError(res, 400, "BadParameter", "Invalid algorithm (alg).");
    if (typeof params.value !== "string" || !/^[A-Za-z0-9_-]+$/.test(params.value))
      return kvError(res, 400, "BadParameter", "Property 'value' must be base64url encoded.");
    const digest = Buffer.from(params.value, "base64url");
    if (digest.length !== digestLengths[params.alg])
      return kvError(
        res,
        400,
        "BadParameter",
        `Invalid digest length for algorithm ${params.alg}: ${digest.length} bytes.`,
      );
    if (!params.alg.startsWith("RS") || version.kty === "EC")
      return kvError(res, 400, "BadParameter", "Key and signing algorithm are incompatible.");
    if (params.alg !== "RS256")
      return kvError(res, 501, "NotImplemented", `The fake signs RS256 only, not ${params.alg}.`);
    if (!version.keyOps.includes("sign"))
      return kvError(
        res,
        403,
        "Forbidden",
        "Operation sign is not permitted on this key.",
        "KeyOperationForbidden",
      );
    const signature = privateEncrypt(
      { key: version.privateKey, padding: constants.RSA_PKCS1_PADDING },
      Buffer.concat([sha256DigestInfo, digest]),
    );
    const answer: Record<string, unknown> = { kid, value: signature.toString("base64url") };
    for (const alter of tampers.splice(0, 1)) alter(answer);
    json(res, answer);
  }

  const server: Server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "https://localhost");
      const raw = Buffer.concat(chunks).toString("utf8");
      if (url.pathname.startsWith(`/${fake.tenantId}/`)) return entra(req, res, url, raw);
      vault(req, res, url, raw);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}

function json(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
  res.end(JSON.stringify(body));
}

import {
  constants,
  createHash,
  generateKeyPairSync,
  type KeyObject,
  privateEncrypt,
  randomBytes,
} from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { crc32c } from "../../src/signer/gcpkms.ts";

/**
 * A local Cloud KMS, written from Google's published REST reference, strict about what it
 * accepts, with a GCE metadata server beside it that issues its access tokens:
 * - asymmetricSign: https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions/asymmetricSign
 *   (request body AsymmetricSignRequest: digest {sha256|sha384|sha512}, digestCrc32c, data,
 *   dataCrc32c; answer: signature, signatureCrc32c, verifiedDigestCrc32c, verifiedDataCrc32c,
 *   name, protectionLevel)
 * - getPublicKey: https://cloud.google.com/kms/docs/reference/rest/v1/projects.locations.keyRings.cryptoKeys.cryptoKeyVersions/getPublicKey
 *   (answer PublicKey: pem, algorithm, pemCrc32c, name, protectionLevel)
 * - checksums: https://cloud.google.com/kms/docs/data-integrity-guidelines
 * - errors: https://cloud.google.com/apis/design/errors ({error: {code, message, status, details}})
 * - metadata server: https://cloud.google.com/compute/docs/metadata/querying-metadata and
 *   .../authenticate-workloads (Metadata-Flavor: Google on request and answer;
 *   instance/service-accounts/default/token → {access_token, expires_in, token_type})
 * Signatures are real: RSASSA-PKCS1-v1_5 over the given SHA-256 digest with node:crypto.
 */
export interface FakeGcpKms {
  /** The Cloud KMS endpoint (spec.endpoint). */
  url: string;
  /** host:port of the metadata server, for GCE_METADATA_HOST. */
  metadataHost: string;
  /** The access token the metadata server issues and the KMS accepts. */
  token: string;
  /** Every KMS request: method, path with query, parsed body. */
  requests: { method: string; path: string; body: unknown; authorization: string | undefined }[];
  /** Metadata server requests (paths). */
  metadataRequests: string[];
  /** Creates a key version (a new one of the same key is a rotation); returns its resource name. */
  addVersion(cryptoKey: string, algorithm?: string): string;
  disable(version: string): void;
  destroy(version: string): void;
  publicKeyOf(version: string): KeyObject;
  /** The next `times` KMS requests answer `status` with Google's error body for it. */
  failNext(status: 429 | 500 | 503, times?: number): void;
  /** Refuse the (valid) token: 403 PERMISSION_DENIED, as an identity without cloudkms.signer gets. */
  deny: boolean;
  /** The next KMS request is answered by `handler` instead (huge bodies, redirects, corruption). */
  hijackNext(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): void;
  /** Alters the next asymmetricSign answer's JSON before it is sent. */
  tamperNext(alter: (answer: Record<string, unknown>) => void): void;
  close(): Promise<void>;
}

interface Version {
  algorithm: string;
  state: "ENABLED" | "DISABLED" | "DESTROYED";
  privateKey?: KeyObject;
  publicKey?: KeyObject;
}

/** DER prefix of DigestInfo for SHA-256 (RFC 8017 §9.2 note 1). */
const sha256DigestInfo = Buffer.from("3031300d060960864801650304020105000420", "hex");
const cloudPlatform = "https://www.googleapis.com/auth/cloud-platform";
const versionName =
  /^projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+\/cryptoKeyVersions\/[^/]+$/;
let sharedKeys: { privateKey: KeyObject; publicKey: KeyObject }[] = [];

/** RSA keys are slow to make: a few are made once per process and handed out in turn. */
function rsaKey(index: number): { privateKey: KeyObject; publicKey: KeyObject } {
  while (sharedKeys.length <= index % 3) {
    sharedKeys = [...sharedKeys, generateKeyPairSync("rsa", { modulusLength: 2048 })];
  }
  return sharedKeys[index % 3] as { privateKey: KeyObject; publicKey: KeyObject };
}

export async function startFakeGcpKms(): Promise<FakeGcpKms> {
  const versions = new Map<string, Version>();
  const counters = new Map<string, number>();
  const token = `ya29.fake-${randomBytes(24).toString("base64url")}`;
  const failures: number[] = [];
  const hijacks: ((req: IncomingMessage, res: ServerResponse, body: string) => void)[] = [];
  const tampers: ((answer: Record<string, unknown>) => void)[] = [];
  let made = 0;

  const fake: FakeGcpKms = {
    url: "",
    metadataHost: "",
    token,
    requests: [],
    metadataRequests: [],
    deny: false,
    addVersion(cryptoKey, algorithm = "RSA_SIGN_PKCS1_2048_SHA256") {
      const n = (counters.get(cryptoKey) ?? 0) + 1;
      counters.set(cryptoKey, n);
      const name = `${cryptoKey}/cryptoKeyVersions/${n}`;
      const rsa = algorithm.startsWith("RSA_") ? rsaKey(made++) : undefined;
      versions.set(name, {
        algorithm,
        state: "ENABLED",
        ...(rsa ? { privateKey: rsa.privateKey, publicKey: rsa.publicKey } : {}),
      });
      return name;
    },
    disable(version) {
      const v = versions.get(version);
      if (v) v.state = "DISABLED";
    },
    destroy(version) {
      const v = versions.get(version);
      if (v) {
        v.state = "DESTROYED";
        delete v.privateKey;
      }
    },
    publicKeyOf(version) {
      const key = versions.get(version)?.publicKey;
      if (!key) throw new Error(`no public key for ${version}`);
      return key;
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

  const googleError = (
    res: ServerResponse,
    code: number,
    status: string,
    message: string,
    details?: unknown[],
  ) => {
    res.writeHead(code, { "content-type": "application/json; charset=UTF-8" });
    res.end(JSON.stringify({ error: { code, message, status, ...(details ? { details } : {}) } }, null, 2));
  };
  const badField = (res: ServerResponse, field: string, description: string) =>
    googleError(res, 400, "INVALID_ARGUMENT", description, [
      {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        fieldViolations: [{ field, description }],
      },
    ]);

  function metadata(req: IncomingMessage, res: ServerResponse, url: URL) {
    fake.metadataRequests.push(`${url.pathname}${url.search}`);
    // The metadata server refuses requests without the header (a guard against SSRF).
    if (req.headers["metadata-flavor"] !== "Google" || req.method !== "GET") {
      res.writeHead(403, { "content-type": "text/html" }).end("Missing Metadata-Flavor:Google header.");
      return;
    }
    const text = (body: string, type = "application/text") =>
      res.writeHead(200, { "metadata-flavor": "Google", "content-type": type }).end(body);
    switch (url.pathname) {
      case "/computeMetadata/v1/instance":
      case "/computeMetadata/v1/instance/":
        return text("attributes/\nhostname\nid\nservice-accounts/\nzone\n");
      case "/computeMetadata/v1/universe/universe-domain":
        return text("googleapis.com");
      case "/computeMetadata/v1/project/project-id":
        return text("ghat-test");
      case "/computeMetadata/v1/instance/service-accounts/default/token": {
        const scopes = url.searchParams.get("scopes");
        if (scopes !== null && !scopes.split(",").includes(cloudPlatform)) {
          res.writeHead(400, { "metadata-flavor": "Google" }).end("scope not granted");
          return;
        }
        return text(
          JSON.stringify({ access_token: token, expires_in: 3599, token_type: "Bearer" }),
          "application/json",
        );
      }
      default:
        res.writeHead(404, { "metadata-flavor": "Google", "content-type": "text/html" }).end("Not Found");
    }
  }

  function kms(req: IncomingMessage, res: ServerResponse, url: URL, raw: string) {
    let body: unknown;
    try {
      body = raw === "" ? undefined : JSON.parse(raw);
    } catch {
      return googleError(res, 400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unexpected token.");
    }
    fake.requests.push({
      method: req.method ?? "",
      path: `${url.pathname}${url.search}`,
      body,
      authorization: req.headers.authorization,
    });
    const hijack = hijacks.shift();
    if (hijack) return hijack(req, res, raw);
    if (req.headers.authorization !== `Bearer ${token}`) {
      res.setHeader("www-authenticate", 'Bearer realm="https://accounts.google.com/"');
      return googleError(
        res,
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
      );
    }
    const failure = failures.shift();
    if (failure === 429)
      return googleError(
        res,
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Cryptographic requests'.",
      );
    if (failure)
      return googleError(
        res,
        failure,
        failure === 503 ? "UNAVAILABLE" : "INTERNAL",
        "Internal error encountered.",
      );

    const path = decodeURIComponent(url.pathname);
    let name: string;
    let method: "sign" | "publicKey";
    if (req.method === "POST" && path.startsWith("/v1/") && path.endsWith(":asymmetricSign")) {
      name = path.slice(4, -":asymmetricSign".length);
      method = "sign";
    } else if (req.method === "GET" && path.startsWith("/v1/") && path.endsWith("/publicKey")) {
      name = path.slice(4, -"/publicKey".length);
      method = "publicKey";
    } else {
      return googleError(res, 404, "NOT_FOUND", "The requested URL was not found on this server.");
    }
    for (const key of url.searchParams.keys()) {
      if (!(method === "publicKey" && key === "publicKeyFormat")) {
        return badField(
          res,
          key,
          `Invalid JSON payload received. Unknown name "${key}": Cannot bind query parameter.`,
        );
      }
    }
    if (!versionName.test(name)) {
      return googleError(
        res,
        400,
        "INVALID_ARGUMENT",
        `Resource name [${name}] does not match any known type.`,
      );
    }
    if (fake.deny) {
      const permission =
        method === "sign"
          ? "cloudkms.cryptoKeyVersions.useToSign"
          : "cloudkms.cryptoKeyVersions.viewPublicKey";
      return googleError(
        res,
        403,
        "PERMISSION_DENIED",
        `Permission '${permission}' denied on resource '${name}' (or it may not exist).`,
      );
    }
    const version = versions.get(name);
    if (!version) return googleError(res, 404, "NOT_FOUND", `${name} not found.`);
    if (version.state !== "ENABLED") {
      return googleError(
        res,
        400,
        "FAILED_PRECONDITION",
        `The request cannot be fulfilled. Resource ${name} has value ${version.state} in field crypto_key_version.state.`,
      );
    }
    if (!version.algorithm.startsWith("RSA_SIGN_") && !version.algorithm.startsWith("EC_SIGN_")) {
      return googleError(
        res,
        400,
        "FAILED_PRECONDITION",
        `Resource ${name} has value ${version.algorithm === "GOOGLE_SYMMETRIC_ENCRYPTION" ? "ENCRYPT_DECRYPT" : "ASYMMETRIC_DECRYPT"} in field crypto_key.purpose.`,
      );
    }
    if (method === "publicKey") {
      if (req.headers["content-length"] && req.headers["content-length"] !== "0") {
        return googleError(res, 400, "INVALID_ARGUMENT", "GET requests carry no body.");
      }
      const pem = version.publicKey?.export({ type: "spki", format: "pem" }).toString() ?? "";
      return json(res, {
        pem,
        algorithm: version.algorithm,
        pemCrc32c: String(crc32c(Buffer.from(pem, "utf8"))),
        name,
        protectionLevel: "SOFTWARE",
      });
    }
    return sign(res, name, version, body);
  }

  function sign(res: ServerResponse, name: string, version: Version, body: unknown) {
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      return googleError(res, 400, "INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object.");
    }
    const request = body as Record<string, unknown>;
    for (const field of Object.keys(request)) {
      if (!["digest", "digestCrc32c", "data", "dataCrc32c"].includes(field)) {
        return badField(
          res,
          field,
          `Invalid JSON payload received. Unknown name "${field}": Cannot find field.`,
        );
      }
    }
    const digest = request.digest as Record<string, unknown> | undefined;
    if (!digest || typeof digest !== "object") {
      return googleError(res, 400, "INVALID_ARGUMENT", "One of digest or data must be specified.");
    }
    const kinds = Object.keys(digest);
    for (const kind of kinds) {
      if (!["sha256", "sha384", "sha512"].includes(kind)) {
        return badField(
          res,
          `digest.${kind}`,
          `Invalid JSON payload received. Unknown name "${kind}" at 'digest': Cannot find field.`,
        );
      }
    }
    if (kinds.length !== 1)
      return googleError(res, 400, "INVALID_ARGUMENT", "Digest must have exactly one digest set.");
    const kind = kinds[0] as string;
    const expected = /_SHA(256|384|512)$/.exec(version.algorithm)?.[1];
    if (kind !== `sha${expected}`) {
      return googleError(
        res,
        400,
        "INVALID_ARGUMENT",
        `Digest type ${kind.toUpperCase()} does not match key algorithm ${version.algorithm}.`,
      );
    }
    const b64 = digest[kind];
    if (typeof b64 !== "string" || b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) {
      return badField(
        res,
        `digest.${kind}`,
        `Invalid value at 'digest.${kind}' (TYPE_BYTES), Base64 decoding failed.`,
      );
    }
    const bytes = Buffer.from(b64, "base64");
    if (bytes.length !== 32) {
      return googleError(
        res,
        400,
        "INVALID_ARGUMENT",
        `The digest has length ${bytes.length}, but the expected length is 32.`,
      );
    }
    let verified = false;
    if (request.digestCrc32c !== undefined) {
      // int64 fields arrive as JSON strings (a number is accepted too by Google's JSON parser).
      const crc = request.digestCrc32c;
      if ((typeof crc !== "string" || !/^[0-9]+$/.test(crc)) && typeof crc !== "number") {
        return badField(
          res,
          "digest_crc32c",
          `Invalid value at 'digest_crc32c' (TYPE_INT64), "${String(crc)}"`,
        );
      }
      if (Number(crc) !== crc32c(bytes)) {
        return googleError(
          res,
          400,
          "INVALID_ARGUMENT",
          "The checksum in field digest_crc32c did not match the data in field digest.",
        );
      }
      verified = true;
    }
    if (!version.algorithm.startsWith("RSA_SIGN_PKCS1_") || !version.privateKey) {
      return googleError(
        res,
        501,
        "UNIMPLEMENTED",
        `The fake signs RSA_SIGN_PKCS1_* only, not ${version.algorithm}.`,
      );
    }
    const signature = privateEncrypt(
      { key: version.privateKey, padding: constants.RSA_PKCS1_PADDING },
      Buffer.concat([sha256DigestInfo, bytes]),
    );
    const answer: Record<string, unknown> = {
      signature: signature.toString("base64"),
      signatureCrc32c: String(crc32c(signature)),
      verifiedDigestCrc32c: verified,
      name,
      verifiedDataCrc32c: false,
      protectionLevel: "SOFTWARE",
    };
    for (const alter of tampers.splice(0, 1)) alter(answer);
    json(res, answer);
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname.startsWith("/computeMetadata/")) return metadata(req, res, url);
      const raw = Buffer.concat(chunks).toString("utf8");
      if (raw !== "" && !(req.headers["content-type"] ?? "").startsWith("application/json")) {
        return googleError(
          res,
          400,
          "INVALID_ARGUMENT",
          "Invalid JSON payload: the content type must be application/json.",
        );
      }
      kms(req, res, url, raw);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  fake.url = `http://127.0.0.1:${port}`;
  fake.metadataHost = `127.0.0.1:${port}`;
  return fake;
}

function json(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { "content-type": "application/json; charset=UTF-8" });
  res.end(JSON.stringify(body, null, 2));
}

/** SHA-256 of `input`, for tests that check what was signed. */
export function sha256(input: Uint8Array): Buffer {
  return createHash("sha256").update(input).digest();
}

import { createPublicKey, type KeyObject } from "node:crypto";
import type { AwsKmsSigner } from "../api/signer.ts";
import { GhatError } from "../core/errors.ts";
import { quotable } from "../github/classify.ts";
import { transportReason } from "./http.ts";
import type { AppSigner, SignerContext } from "./types.ts";

const what = "AWS KMS";
/** RS256: RSASSA-PKCS1-v1_5 over a SHA-256 digest (KMS hashes the RAW message itself). */
const signingAlgorithm = "RSASSA_PKCS1_V1_5_SHA_256" as const;
/** The SDK retries once on its own (throttling, 5xx, resets); the operator's backoff does the rest. */
const maxAttempts = 2;

/** What createAwsKmsSigner needs of a KMS client; tests pass a fake. */
export interface KmsClientLike {
  send(command: unknown, options?: { abortSignal?: AbortSignal }): Promise<unknown>;
  destroy?(): void;
}

export interface AwsKmsSignerOptions {
  /** For tests: the client and commands instead of @aws-sdk/client-kms's. */
  sdk?: KmsSdk | undefined;
}

/** The parts of @aws-sdk/client-kms used here. */
export interface KmsSdk {
  createClient(config: KmsClientConfig): KmsClientLike;
  sign(input: {
    KeyId: string;
    Message: Uint8Array;
    MessageType: "RAW";
    SigningAlgorithm: typeof signingAlgorithm;
  }): unknown;
  getPublicKey(input: { KeyId: string }): unknown;
}

export interface KmsClientConfig {
  region?: string;
  endpoint?: string;
  maxAttempts: number;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  requestHandler: { requestTimeout: number; connectionTimeout: number };
}

/**
 * Signs with an AWS KMS asymmetric key (RSA_2048 and up, SIGN_VERIFY): KMS hashes the JWT's
 * signing input (MessageType RAW) and answers an RSASSA_PKCS1_V1_5_SHA_256 signature.
 * @aws-sdk/client-kms is imported here, on first use, so an operator signing with PEM keys
 * never loads it. Credentials come from the SDK's default chain (IRSA, EKS Pod Identity,
 * environment, instance profile); when the context carries its own environment with
 * AWS_ACCESS_KEY_ID, those keys are used instead. Each call is bounded by the context's
 * timeout (socket timeouts and an abort signal) and retried at most once by the SDK.
 * @see https://docs.aws.amazon.com/kms/latest/APIReference/API_Sign.html
 * @see https://docs.aws.amazon.com/kms/latest/APIReference/API_GetPublicKey.html
 */
export async function createAwsKmsSigner(
  spec: AwsKmsSigner,
  ctx: SignerContext,
  options: AwsKmsSignerOptions = {},
): Promise<AppSigner> {
  const sdk = options.sdk ?? (await loadSdk());
  const env = ctx.env ?? process.env;
  const region =
    spec.region ??
    regionOfArn(spec.keyId) ??
    (ctx.env ? (env.AWS_REGION ?? env.AWS_DEFAULT_REGION) : undefined);
  const client = sdk.createClient({
    ...(region ? { region } : {}),
    ...(spec.endpoint ? { endpoint: spec.endpoint } : {}),
    maxAttempts,
    ...(ctx.env ? staticCredentials(ctx.env) : {}),
    requestHandler: { requestTimeout: ctx.timeoutMs, connectionTimeout: ctx.timeoutMs },
  });

  async function call(command: unknown): Promise<Record<string, unknown>> {
    let out: unknown;
    try {
      // The SDK's own retry shares this deadline: one signature never takes longer than the timeout.
      out = await client.send(command, { abortSignal: AbortSignal.timeout(ctx.timeoutMs) });
    } catch (err) {
      throw classifyKmsError(err, spec.keyId);
    }
    if (out === null || typeof out !== "object") {
      throw new GhatError("SignerUnavailable", `${what} answered without a result`);
    }
    return out as Record<string, unknown>;
  }

  return {
    id: `awsKms:${spec.endpoint ?? ""}|${region ?? ""}|${spec.keyId}`,
    kind: "awsKms",
    async sign(input: Uint8Array): Promise<Uint8Array> {
      const out = await call(
        sdk.sign({
          KeyId: spec.keyId,
          Message: input,
          MessageType: "RAW",
          SigningAlgorithm: signingAlgorithm,
        }),
      );
      const signature = out.Signature;
      if (!(signature instanceof Uint8Array) || signature.length === 0) {
        throw new GhatError("SignerUnavailable", `${what} answered without a signature`);
      }
      return new Uint8Array(signature);
    },
    async publicKey(): Promise<KeyObject> {
      const out = await call(sdk.getPublicKey({ KeyId: spec.keyId }));
      const keySpec = typeof out.KeySpec === "string" ? out.KeySpec : "";
      if (!/^RSA_\d+$/.test(keySpec)) {
        throw new GhatError(
          "SignerKeyNotFound",
          `${what} key ${spec.keyId} is ${safeWord(keySpec, "of an unknown key spec")}, not an RSA key`,
        );
      }
      if (out.KeyUsage !== "SIGN_VERIFY") {
        throw new GhatError(
          "SignerKeyNotFound",
          `${what} key ${spec.keyId} has key usage ${safeWord(out.KeyUsage, "unknown")}, not SIGN_VERIFY`,
        );
      }
      const algorithms = Array.isArray(out.SigningAlgorithms) ? out.SigningAlgorithms : [];
      if (!algorithms.includes(signingAlgorithm)) {
        throw new GhatError(
          "SignerKeyNotFound",
          `${what} key ${spec.keyId} does not offer ${signingAlgorithm} (RS256)`,
        );
      }
      if (!(out.PublicKey instanceof Uint8Array) || out.PublicKey.length === 0) {
        throw new GhatError("SignerUnavailable", `${what} answered without a public key`);
      }
      let key: KeyObject;
      try {
        key = createPublicKey({ key: Buffer.from(out.PublicKey), format: "der", type: "spki" });
      } catch {
        throw new GhatError("SignerKeyNotFound", `${what} answered a public key that cannot be read`);
      }
      if (key.asymmetricKeyType !== "rsa") {
        throw new GhatError("SignerKeyNotFound", `${what} key ${spec.keyId} is not an RSA key`);
      }
      return key;
    },
    async close(): Promise<void> {
      client.destroy?.();
    },
  };
}

let sdkModule: Promise<KmsSdk> | undefined;

/** @aws-sdk/client-kms, imported once, on the first awsKms signer. */
function loadSdk(): Promise<KmsSdk> {
  sdkModule ??= import("@aws-sdk/client-kms").then(
    (lib): KmsSdk => ({
      createClient: (config) => new lib.KMSClient(config),
      sign: (input) => new lib.SignCommand(input),
      getPublicKey: (input) => new lib.GetPublicKeyCommand(input),
    }),
    () => {
      sdkModule = undefined;
      throw new GhatError("SignerUnavailable", `${what}: @aws-sdk/client-kms cannot be loaded`);
    },
  );
  return sdkModule;
}

/** The region of a key or alias ARN (`arn:aws:kms:eu-west-1:111122223333:key/…`). */
export function regionOfArn(keyId: string): string | undefined {
  const m = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):/.exec(keyId);
  return m?.[1];
}

/** Keys from the context's own environment, when it has them; the SDK's chain otherwise. */
function staticCredentials(env: NodeJS.ProcessEnv): Pick<KmsClientConfig, "credentials"> {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) return {};
  const sessionToken = env.AWS_SESSION_TOKEN;
  return { credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } };
}

/** Error names meaning the caller's credentials were refused or may not use the key. */
const deniedNames = new Set([
  "AccessDeniedException",
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "IncompleteSignature",
  "IncompleteSignatureException",
  "InvalidClientTokenId",
  "MissingAuthenticationToken",
  "MissingAuthenticationTokenException",
  "ExpiredToken",
  "ExpiredTokenException",
  "NotAuthorized",
  "NotAuthorizedException",
  "InvalidGrantTokenException",
  "CredentialsProviderError",
]);

/** The key does not exist, is not enabled, or cannot sign RS256. */
const keyNotFoundNames = new Set([
  "NotFoundException",
  "DisabledException",
  "KMSInvalidStateException",
  "InvalidKeyUsageException",
  "InvalidArnException",
  "UnsupportedOperationException",
]);

/**
 * Retried: KMS busy or failing (KMSInternalException, DependencyTimeoutException, throttling),
 * and KeyUnavailableException, which AWS documents as "you can retry the request" (a key in
 * a custom key store whose backing HSM or proxy is briefly out of reach).
 */
const unavailableNames = new Set([
  "KMSInternalException",
  "DependencyTimeoutException",
  "KeyUnavailableException",
  "ThrottlingException",
  "Throttling",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "LimitExceededException",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "InternalFailure",
  "RequestTimeout",
  "RequestTimeoutException",
  "TimeoutError",
  "AbortError",
]);

/**
 * Turns what the SDK threw into a GhatError. AWS's own message is quoted (one line, bounded,
 * redacted); a transport failure names only its code. Credentials never reach a message: the
 * SDK does not put them in its errors, and the region-missing hint names variables, not values.
 */
export function classifyKmsError(err: unknown, keyId: string): GhatError {
  if (err instanceof GhatError) return err;
  const e = (err ?? {}) as {
    name?: unknown;
    message?: unknown;
    $fault?: unknown;
    $metadata?: { httpStatusCode?: unknown };
  };
  const name = typeof e.name === "string" ? e.name : "";
  const status = typeof e.$metadata?.httpStatusCode === "number" ? e.$metadata.httpStatusCode : undefined;
  const said = typeof e.message === "string" && status !== undefined ? quotable(e.message) : "";
  const answered = `${what} answered ${safeWord(name, String(status ?? "an error"))}${said ? `: ${said}` : ""}`;
  const opts = status === undefined ? { cause: err } : { status, cause: err };
  if (name === "Error" && typeof e.message === "string" && /^Region is missing/.test(e.message)) {
    return new GhatError(
      "SignerKeyNotFound",
      `${what}: no region for key ${keyId}; set region, name the key by its ARN or set AWS_REGION`,
      opts,
    );
  }
  if (name === "CredentialsProviderError") {
    return new GhatError(
      "SignerDenied",
      `${what}: no AWS credentials (IRSA, EKS Pod Identity, AWS_ACCESS_KEY_ID or an instance profile)`,
      opts,
    );
  }
  if (deniedNames.has(name)) return new GhatError("SignerDenied", answered, opts);
  if (keyNotFoundNames.has(name))
    return new GhatError("SignerKeyNotFound", `${answered} (key ${keyId})`, opts);
  if (unavailableNames.has(name) || /^(Xks|CloudHsm|CustomKeyStore)/.test(name)) {
    if (status === undefined) {
      return new GhatError("SignerUnavailable", `${what} did not answer: ${transportReason(err)}`, opts);
    }
    return new GhatError("SignerUnavailable", answered, opts);
  }
  if (status === undefined) {
    // Nothing came back: a refused connection, a reset, DNS, or an answer that was not KMS's.
    return new GhatError("SignerUnavailable", `${what} did not answer: ${transportReason(err)}`, opts);
  }
  if (status >= 500 || status === 429 || e.$fault === "server") {
    return new GhatError("SignerUnavailable", answered, opts);
  }
  if (status === 401 || status === 403) return new GhatError("SignerDenied", answered, opts);
  if (status === 404) return new GhatError("SignerKeyNotFound", `${answered} (key ${keyId})`, opts);
  // Another 4xx: the request itself is refused and will be until something changes.
  return new GhatError("SignerDenied", answered, opts);
}

/** An enum-like word from an answer, or the fallback when it is not one. */
function safeWord(value: unknown, fallback: string): string {
  return typeof value === "string" && /^[A-Za-z0-9_]{1,64}$/.test(value) ? value : fallback;
}

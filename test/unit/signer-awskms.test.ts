import { generateKeyPairSync, sign as rsaSign } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { AwsKmsSigner } from "../../src/api/signer.ts";
import { systemClock } from "../../src/clock.ts";
import { GhatError } from "../../src/core/errors.ts";
import {
  classifyKmsError,
  createAwsKmsSigner,
  type KmsClientConfig,
  type KmsSdk,
  regionOfArn,
} from "../../src/signer/awskms.ts";
import type { SignerContext } from "../../src/signer/types.ts";

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const secretAccessKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

interface Sent {
  op: "Sign" | "GetPublicKey";
  input: Record<string, unknown>;
  signal: AbortSignal | undefined;
}

/** A stand-in for @aws-sdk/client-kms: records configs and commands, answers with `answer`. */
function fakeSdk(answer: (sent: Sent) => unknown) {
  const configs: KmsClientConfig[] = [];
  const sent: Sent[] = [];
  let destroyed = 0;
  const sdk: KmsSdk = {
    createClient(config) {
      configs.push(config);
      return {
        async send(command, options) {
          const s = { ...(command as Omit<Sent, "signal">), signal: options?.abortSignal };
          sent.push(s);
          const out = answer(s);
          if (out instanceof Error) throw out;
          return out;
        },
        destroy() {
          destroyed++;
        },
      };
    },
    sign: (input) => ({ op: "Sign", input }),
    getPublicKey: (input) => ({ op: "GetPublicKey", input }),
  };
  return { sdk, configs, sent, destroyed: () => destroyed };
}

function context(env?: NodeJS.ProcessEnv): SignerContext {
  return {
    clock: systemClock,
    timeoutMs: 1234,
    readSecret: async () => undefined,
    serviceAccountToken: async () => undefined,
    ...(env ? { env } : {}),
  };
}

/** An error shaped like the SDK's service exceptions. */
function awsError(name: string, message: string, status?: number, fault: "client" | "server" = "client") {
  const err = new Error(message) as Error & { $fault: string; $metadata: { httpStatusCode?: number } };
  err.name = name;
  err.$fault = fault;
  err.$metadata = status === undefined ? {} : { httpStatusCode: status };
  return err;
}

const spec: AwsKmsSigner = { keyId: "1234abcd-12ab-34cd-56ef-1234567890ab", region: "eu-west-1" };

describe("createAwsKmsSigner", () => {
  it("signs the RAW message with RSASSA_PKCS1_V1_5_SHA_256, bounded by the context's timeout", async () => {
    const fake = fakeSdk((s) => ({
      KeyId: "arn",
      Signature: rsaSign("sha256", s.input.Message as Uint8Array, privateKey),
    }));
    const signer = await createAwsKmsSigner(spec, context(), { sdk: fake.sdk });
    const input = new TextEncoder().encode("header.payload");
    const signature = await signer.sign(input);
    expect(signature).toBeInstanceOf(Uint8Array);
    expect(fake.sent[0]?.input).toEqual({
      KeyId: spec.keyId,
      Message: input,
      MessageType: "RAW",
      SigningAlgorithm: "RSASSA_PKCS1_V1_5_SHA_256",
    });
    expect(fake.sent[0]?.signal).toBeInstanceOf(AbortSignal);
    expect(fake.configs[0]).toMatchObject({
      region: "eu-west-1",
      maxAttempts: 2,
      requestHandler: { requestTimeout: 1234, connectionTimeout: 1234 },
    });
    expect(signer.kind).toBe("awsKms");
    expect(signer.id).toContain(spec.keyId);
    await signer.close?.();
    expect(fake.destroyed()).toBe(1);
  });

  it("takes the region from the spec, else from a key or alias ARN, else leaves it to the SDK", async () => {
    const fake = fakeSdk(() => ({}));
    await createAwsKmsSigner(
      { keyId: "arn:aws:kms:us-east-2:111122223333:key/abc", endpoint: "http://kms.local:4599" },
      context(),
      {
        sdk: fake.sdk,
      },
    );
    await createAwsKmsSigner({ keyId: "arn:aws-cn:kms:cn-north-1:111122223333:alias/app" }, context(), {
      sdk: fake.sdk,
    });
    await createAwsKmsSigner({ keyId: "alias/app" }, context(), { sdk: fake.sdk });
    expect(fake.configs[0]).toMatchObject({ region: "us-east-2", endpoint: "http://kms.local:4599" });
    expect(fake.configs[1]?.region).toBe("cn-north-1");
    expect(fake.configs[2]?.region).toBeUndefined();
    expect(regionOfArn("alias/app")).toBeUndefined();
  });

  it("uses the context's own AWS keys when it has them, the SDK's default chain otherwise", async () => {
    const fake = fakeSdk(() => ({}));
    await createAwsKmsSigner(
      spec,
      context({
        AWS_ACCESS_KEY_ID: "AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
        AWS_SESSION_TOKEN: "tok",
      }),
      { sdk: fake.sdk },
    );
    await createAwsKmsSigner(spec, context({}), { sdk: fake.sdk });
    await createAwsKmsSigner(spec, context(), { sdk: fake.sdk });
    expect(fake.configs[0]?.credentials).toEqual({
      accessKeyId: "AKIDEXAMPLE",
      secretAccessKey,
      sessionToken: "tok",
    });
    expect(fake.configs[1]?.credentials).toBeUndefined();
    expect(fake.configs[2]?.credentials).toBeUndefined();
  });

  it("reads the public key from GetPublicKey and checks key spec, usage and algorithm", async () => {
    const der = publicKey.export({ type: "spki", format: "der" });
    const good = {
      PublicKey: new Uint8Array(der),
      KeySpec: "RSA_2048",
      KeyUsage: "SIGN_VERIFY",
      SigningAlgorithms: ["RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256"],
    };
    const signerFor = async (answer: unknown) =>
      createAwsKmsSigner(spec, context(), { sdk: fakeSdk(() => answer).sdk });
    const key = await (await signerFor(good)).publicKey();
    expect(key?.export({ type: "spki", format: "der" }).equals(der)).toBe(true);
    for (const [bad, pattern] of [
      [{ ...good, KeySpec: "ECC_NIST_P256" }, /ECC_NIST_P256, not an RSA key/],
      [{ ...good, KeyUsage: "ENCRYPT_DECRYPT" }, /ENCRYPT_DECRYPT, not SIGN_VERIFY/],
      [{ ...good, SigningAlgorithms: ["RSASSA_PSS_SHA_256"] }, /does not offer RSASSA_PKCS1_V1_5_SHA_256/],
      [{ ...good, PublicKey: new Uint8Array([1, 2, 3]) }, /cannot be read/],
    ] as const) {
      const err = await (await signerFor(bad)).publicKey().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GhatError);
      expect((err as GhatError).code).toBe("SignerKeyNotFound");
      expect((err as GhatError).message).toMatch(pattern);
    }
  });

  it("refuses an answer without a signature as SignerUnavailable", async () => {
    const signer = await createAwsKmsSigner(spec, context(), { sdk: fakeSdk(() => ({ KeyId: "x" })).sdk });
    const err = await signer.sign(new Uint8Array([1])).catch((e: unknown) => e);
    expect((err as GhatError).code).toBe("SignerUnavailable");
  });
});

describe("classifyKmsError", () => {
  it.each<[string, number | undefined, "client" | "server", string]>([
    ["AccessDeniedException", 400, "client", "SignerDenied"],
    ["UnrecognizedClientException", 400, "client", "SignerDenied"],
    ["InvalidSignatureException", 400, "client", "SignerDenied"],
    ["IncompleteSignatureException", 400, "client", "SignerDenied"],
    ["ExpiredTokenException", 400, "client", "SignerDenied"],
    ["NotFoundException", 400, "client", "SignerKeyNotFound"],
    ["DisabledException", 400, "client", "SignerKeyNotFound"],
    ["KMSInvalidStateException", 400, "client", "SignerKeyNotFound"],
    ["InvalidKeyUsageException", 400, "client", "SignerKeyNotFound"],
    ["InvalidArnException", 400, "client", "SignerKeyNotFound"],
    ["KeyUnavailableException", 500, "server", "SignerUnavailable"],
    ["KMSInternalException", 500, "server", "SignerUnavailable"],
    ["DependencyTimeoutException", 503, "server", "SignerUnavailable"],
    ["ThrottlingException", 400, "client", "SignerUnavailable"],
    ["SomethingNewException", 502, "server", "SignerUnavailable"],
    ["SomethingNewException", 429, "client", "SignerUnavailable"],
    ["SomethingNewException", 403, "client", "SignerDenied"],
    ["SomethingNewException", 404, "client", "SignerKeyNotFound"],
  ])("%s (%s) is %s", (name, status, fault, code) => {
    const err = classifyKmsError(awsError(name, "the service said so", status, fault), spec.keyId);
    expect(err.code).toBe(code);
    expect(err.status).toBe(status);
    expect(err.message).toContain(name);
    expect(err.message).toContain("the service said so");
  });

  it("reports transport failures and timeouts as SignerUnavailable, naming only their code", () => {
    const refused = Object.assign(new Error(`connect ECONNREFUSED 10.0.0.1:443 ${secretAccessKey}`), {
      code: "ECONNREFUSED",
      $metadata: { attempts: 2 },
    });
    const a = classifyKmsError(refused, spec.keyId);
    expect(a.code).toBe("SignerUnavailable");
    expect(a.message).toBe("AWS KMS did not answer: ECONNREFUSED");
    const abort = Object.assign(new Error("Request aborted"), { name: "AbortError" });
    expect(classifyKmsError(abort, spec.keyId).message).toBe("AWS KMS did not answer: timed out");
    const timeout = Object.assign(new Error("socket timed out"), { name: "TimeoutError" });
    expect(classifyKmsError(timeout, spec.keyId).code).toBe("SignerUnavailable");
  });

  it("redacts and bounds AWS's message, and never quotes credentials", () => {
    const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjEyMzQ1fQ.c2lnbmF0dXJlc2lnbmF0dXJl";
    const err = classifyKmsError(
      awsError("AccessDeniedException", `User is not authorized\nwith token ${jwt} ${"x".repeat(5000)}`, 400),
      spec.keyId,
    );
    expect(err.code).toBe("SignerDenied");
    expect(err.message).not.toContain(jwt);
    expect(err.message).not.toContain("\n");
    expect(err.message.length).toBeLessThan(700);
    const missing = classifyKmsError(
      Object.assign(new Error("Could not load credentials from any providers"), {
        name: "CredentialsProviderError",
      }),
      spec.keyId,
    );
    expect(missing.code).toBe("SignerDenied");
    expect(missing.message).toMatch(/no AWS credentials/);
  });

  it("names the missing region rather than failing obscurely", () => {
    const err = classifyKmsError(new Error("Region is missing"), "alias/app");
    expect(err.code).toBe("SignerKeyNotFound");
    expect(err.message).toMatch(/no region for key alias\/app/);
  });

  it("passes GhatErrors through", () => {
    const original = new GhatError("SignerDenied", "x");
    expect(classifyKmsError(original, spec.keyId)).toBe(original);
  });
});

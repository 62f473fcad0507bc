import { generateKeyPairSync, type KeyObject, verify } from "node:crypto";
import { createRequire } from "node:module";
import type * as Pkcs11js from "pkcs11js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AwsKmsSigner, Pkcs11Signer } from "../../src/api/signer.ts";
import { systemClock } from "../../src/clock.ts";
import { GhatError } from "../../src/core/errors.ts";
import { signAppJwt } from "../../src/github/jwt.ts";
import { createAwsKmsSigner } from "../../src/signer/awskms.ts";
import { createPkcs11Signer } from "../../src/signer/pkcs11.ts";
import type { AppSigner, SignerContext } from "../../src/signer/types.ts";
import { type LocalKms, startLocalKms } from "../support/localkms.ts";
import { createSoftHsm, type SoftHsm, type SoftHsmToken, softHsmModule } from "../support/softhsm.ts";

// Real backends, no Kubernetes: local-kms (built from the Go module proxy by
// hack/localkms/build.sh) and SoftHSM 2 (apt package softhsm2) through pkcs11js.

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const privateKeyPem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();

/** A local-kms does not check signatures, but the SDK needs credentials to make them. */
const awsSecret = "local-kms-test-secret-0123456789";
const awsEnv = { AWS_ACCESS_KEY_ID: "AKIAGHATLOCALKMSTEST", AWS_SECRET_ACCESS_KEY: awsSecret };

function context(secrets: Record<string, string> = {}, env?: NodeJS.ProcessEnv): SignerContext {
  return {
    clock: systemClock,
    timeoutMs: 5000,
    readSecret: async (name, key) => secrets[`${name}/${key}`],
    serviceAccountToken: async () => undefined,
    ...(env ? { env } : {}),
  };
}

/** Signs a JWT with the signer and checks its RS256 signature against `key`. */
async function signsVerifiably(signer: AppSigner, key: KeyObject): Promise<void> {
  const jwt = await signAppJwt({ key: signer, issuer: 12345, nowMs: Date.now(), offsetMs: 0 });
  const [header, payload, signature] = jwt.split(".");
  expect(JSON.parse(Buffer.from(header ?? "", "base64url").toString())).toEqual({ alg: "RS256", typ: "JWT" });
  expect(
    verify("sha256", Buffer.from(`${header}.${payload}`), key, Buffer.from(signature ?? "", "base64url")),
  ).toBe(true);
}

function spki(key: KeyObject): string {
  return key.export({ type: "spki", format: "der" }).toString("base64");
}

async function failure(work: Promise<unknown>): Promise<GhatError> {
  const err = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GhatError);
  return err as GhatError;
}

describe("awsKms signer against local-kms", () => {
  let kms: LocalKms;
  const keyId = "5f0e8a57-3c9b-4f0e-9a51-4b7d2c1e6a90";

  beforeAll(async () => {
    kms = await startLocalKms({ privateKeyPem, keyId, alias: "alias/ghat-app" });
  }, 300_000);
  afterAll(async () => {
    await kms?.close();
  });

  const spec = (over: Partial<AwsKmsSigner> = {}): AwsKmsSigner => ({
    keyId,
    region: kms.region,
    endpoint: kms.endpoint,
    ...over,
  });

  it("signs a JWT that the seeded key's public key verifies, by key id, key ARN, alias and alias ARN", async () => {
    for (const s of [
      spec(),
      spec({ keyId: kms.keyArn, region: undefined }),
      spec({ keyId: kms.alias }),
      spec({ keyId: kms.aliasArn, region: undefined }),
    ]) {
      const signer = await createAwsKmsSigner(s, context({}, awsEnv));
      expect(signer.kind).toBe("awsKms");
      await signsVerifiably(signer, publicKey);
      await signer.close?.();
    }
  });

  it("answers the seeded key's public key (GetPublicKey)", async () => {
    const signer = await createAwsKmsSigner(spec(), context({}, awsEnv));
    const key = await signer.publicKey();
    expect(key).toBeDefined();
    expect(spki(key as KeyObject)).toBe(spki(publicKey));
    await signer.close?.();
  });

  it("reports an unknown key as SignerKeyNotFound", async () => {
    const signer = await createAwsKmsSigner(
      spec({ keyId: "00000000-0000-4000-8000-000000000000" }),
      context({}, awsEnv),
    );
    const signing = await failure(signer.sign(new TextEncoder().encode("x")));
    expect(signing.code).toBe("SignerKeyNotFound");
    expect(signing.message).toMatch(/NotFoundException/);
    expect(signing.message).not.toContain(awsSecret);
    expect((await failure(signer.publicKey())).code).toBe("SignerKeyNotFound");
    await signer.close?.();
  });

  it("reports a stopped local-kms as SignerUnavailable (retryable)", async () => {
    const other = await startLocalKms({ privateKeyPem });
    try {
      const signer = await createAwsKmsSigner(
        { keyId: other.keyId, region: other.region, endpoint: other.endpoint },
        context({}, awsEnv),
      );
      await signsVerifiably(signer, publicKey);
      await other.stop();
      const err = await failure(signer.sign(new TextEncoder().encode("x")));
      expect(err.code).toBe("SignerUnavailable");
      expect(err.retryable).toBe(true);
      expect(err.message).toMatch(/did not answer: ECONNREFUSED/);
      expect(err.message).not.toContain(awsSecret);
      await signer.close?.();
    } finally {
      await other.close();
    }
  });
});

describe("pkcs11 signer against SoftHSM", () => {
  let hsm: SoftHsm;
  let token: SoftHsmToken;
  const allowed = { allowedModules: [softHsmModule] };
  const wrongPin = "99999999-wrong";

  beforeAll(() => {
    // Before the module's first C_Initialize in this process: SoftHSM reads SOFTHSM2_CONF then.
    hsm = createSoftHsm();
    token = hsm.addToken({ tokenLabel: "ghat-test", privateKeyPem, keyLabel: "app-key", keyId: "0a1b" });
  });
  afterAll(() => hsm?.close());

  const spec = (over: Partial<Pkcs11Signer> = {}): Pkcs11Signer => ({
    module: token.module,
    tokenLabel: token.tokenLabel,
    keyLabel: token.keyLabel,
    pinSecretRef: { name: "hsm", key: "pin" },
    ...over,
  });
  const secrets = () => ({ "hsm/pin": token.pin, "wrong/pin": wrongPin });

  it("signs a JWT the key's public key verifies, and answers the token's public object", async () => {
    const signer = createPkcs11Signer(spec(), context(secrets()), allowed);
    expect(signer.id).toContain(softHsmModule);
    expect(signer.id).toContain("ghat-test");
    await signsVerifiably(signer, publicKey);
    const key = await signer.publicKey();
    expect(key).toBeDefined();
    expect(spki(key as KeyObject)).toBe(spki(publicKey));
    await signer.close?.();
  });

  it("finds the token by slot id and the key by CKA_ID, and serialises concurrent signatures", async () => {
    const signer = createPkcs11Signer(
      spec({ tokenLabel: undefined, slot: token.slot, keyLabel: undefined, keyId: "0A1B" }),
      context(secrets()),
      allowed,
    );
    const inputs = ["a", "b", "c", "d"].map((s) => new TextEncoder().encode(`input ${s}`));
    const signatures = await Promise.all(inputs.map((input) => signer.sign(input)));
    signatures.forEach((signature, i) => {
      expect(verify("sha256", inputs[i] as Uint8Array, publicKey, signature)).toBe(true);
    });
    await signer.close?.();
  });

  it("refuses a wrong PIN as SignerDenied without quoting either PIN", async () => {
    const signer = createPkcs11Signer(
      spec({ pinSecretRef: { name: "wrong", key: "pin" } }),
      context(secrets()),
      allowed,
    );
    const err = await failure(signer.sign(new TextEncoder().encode("x")));
    expect(err.code).toBe("SignerDenied");
    expect(err.message).toMatch(/CKR_PIN_INCORRECT/);
    expect(err.message).not.toContain(wrongPin);
    expect(err.message).not.toContain(token.pin);
    await signer.close?.();
  });

  it("refuses a wrong PIN while another signer holds the token's login", async () => {
    const good = createPkcs11Signer(spec(), context(secrets()), allowed);
    await signsVerifiably(good, publicKey);
    const bad = createPkcs11Signer(
      spec({ pinSecretRef: { name: "wrong", key: "pin" } }),
      context(secrets()),
      allowed,
    );
    const err = await failure(bad.sign(new TextEncoder().encode("x")));
    expect(err.code).toBe("SignerDenied");
    expect(err.message).not.toContain(wrongPin);
    expect(err.message).not.toContain(token.pin);
    // The refused signer leaves the other one's session and login alone.
    await signsVerifiably(good, publicKey);
    await bad.close?.();
    await good.close?.();
  });

  it("reports an unknown key label or token label as SignerKeyNotFound", async () => {
    const noKey = createPkcs11Signer(spec({ keyLabel: "no-such-key" }), context(secrets()), allowed);
    const err = await failure(noKey.sign(new TextEncoder().encode("x")));
    expect(err.code).toBe("SignerKeyNotFound");
    expect(err.message).toContain("no-such-key");
    await noKey.close?.();
    const noToken = createPkcs11Signer(spec({ tokenLabel: "no-such-token" }), context(secrets()), allowed);
    expect((await failure(noToken.sign(new TextEncoder().encode("x")))).code).toBe("SignerKeyNotFound");
    await noToken.close?.();
  });

  it("refuses a module that is not allowed, naming --pkcs11-module, before loading it", () => {
    let thrown: unknown;
    try {
      createPkcs11Signer(spec({ module: "/tmp/evil/libevil.so" }), context(secrets()), allowed);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(GhatError);
    expect((thrown as GhatError).code).toBe("SignerDenied");
    expect((thrown as GhatError).message).toContain("--pkcs11-module");
    expect((thrown as GhatError).message).toContain("/tmp/evil/libevil.so");
  });

  it("opens a new session and logs in again after its session was closed under it", async () => {
    const signer = createPkcs11Signer(spec(), context(secrets()), allowed);
    await signsVerifiably(signer, publicKey);
    // Another handle on the same (already initialised) SoftHSM closes every session of the process.
    const lib = createRequire(import.meta.url)("pkcs11js") as typeof Pkcs11js;
    const other = new lib.PKCS11();
    other.load(softHsmModule);
    expect(() => other.C_Initialize()).toThrow(/CKR_CRYPTOKI_ALREADY_INITIALIZED/);
    const slot = other
      .C_GetSlotList(true)
      .find((s) => other.C_GetTokenInfo(s).label.trim() === token.tokenLabel);
    expect(slot).toBeDefined();
    other.C_CloseAllSessions(slot as Buffer);
    await signsVerifiably(signer, publicKey);
    await signer.close?.();
  });
});

import { execFileSync } from "node:child_process";
import { verify } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { GcpKmsSigner } from "../../src/api/signer.ts";
import { GhatError } from "../../src/core/errors.ts";
import { crc32c, createGcpKmsSigner, type GcpKmsSignerOptions } from "../../src/signer/gcpkms.ts";
import type { AppSigner, SignerContext } from "../../src/signer/types.ts";
import { type FakeGcpKms, sha256, startFakeGcpKms } from "../support/gcpkms-server.ts";
import { FakeClock } from "./fakeclock.ts";

const cryptoKey = "projects/ghat-test/locations/europe-west1/keyRings/ghat/cryptoKeys/app";
const input = new TextEncoder().encode(
  "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjEsImV4cCI6MiwiaXNzIjoxfQ",
);

let kms: FakeGcpKms;
let v1: string;
const signers: AppSigner[] = [];
/** Every error message a test saw, checked for the token at the end. */
const messages: string[] = [];

const ctx: SignerContext = {
  clock: new FakeClock(),
  timeoutMs: 3_000,
  readSecret: async () => undefined,
  serviceAccountToken: async () => undefined,
};

function signer(spec: Partial<GcpKmsSigner> = {}, options: GcpKmsSignerOptions = {}): AppSigner {
  const s = createGcpKmsSigner({ keyVersion: v1, endpoint: kms.url, ...spec }, ctx, {
    auth: { getAccessToken: async () => kms.token },
    ...options,
  });
  signers.push(s);
  return s;
}

async function caught(p: Promise<unknown>): Promise<GhatError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof GhatError) {
      messages.push(err.message);
      return err;
    }
    throw err;
  }
  throw new Error("expected a GhatError");
}

beforeAll(async () => {
  kms = await startFakeGcpKms();
  v1 = kms.addVersion(cryptoKey);
});
afterEach(() => {
  kms.deny = false;
});
afterAll(async () => {
  await Promise.all(signers.map((s) => s.close?.()));
  await kms.close();
  for (const m of messages) expect(m).not.toContain(kms.token);
});

describe("CRC32C", () => {
  it("matches the Castagnoli check values", () => {
    expect(crc32c(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });
});

describe("GCP KMS signer", () => {
  it("signs the digest of the signing input with RS256, verifiable with the key version's public key", async () => {
    const s = signer();
    const signature = await s.sign(input);
    expect(verify("sha256", input, kms.publicKeyOf(v1), signature)).toBe(true);
    const publicKey = await s.publicKey();
    expect(publicKey?.equals(kms.publicKeyOf(v1))).toBe(true);
    expect(verify("sha256", input, publicKey as NonNullable<typeof publicKey>, signature)).toBe(true);
    expect(s.id).toBe(`gcpKms:${v1}`);
    expect(s.kind).toBe("gcpKms");

    const [signReq, keyReq] = kms.requests.slice(-2);
    expect(signReq?.method).toBe("POST");
    expect(signReq?.path).toBe(`/v1/${v1}:asymmetricSign`);
    expect(signReq?.authorization).toBe(`Bearer ${kms.token}`);
    const digest = sha256(input);
    expect(signReq?.body).toEqual({
      digest: { sha256: digest.toString("base64") },
      digestCrc32c: String(crc32c(digest)),
    });
    expect(keyReq?.method).toBe("GET");
    expect(keyReq?.path).toBe(`/v1/${v1}/publicKey`);
  });

  it("signs with the named version after a rotation, under a new id", async () => {
    const v2 = kms.addVersion(cryptoKey);
    const old = signer();
    const rotated = signer({ keyVersion: v2 });
    expect(rotated.id).not.toBe(old.id);
    const signature = await rotated.sign(input);
    expect(verify("sha256", input, kms.publicKeyOf(v2), signature)).toBe(true);
    expect(verify("sha256", input, kms.publicKeyOf(v1), signature)).toBe(false);
    expect((await rotated.publicKey())?.equals(kms.publicKeyOf(v2))).toBe(true);
  });

  it("refuses a signature whose CRC32C does not match (corrupted on the way: retried)", async () => {
    kms.tamperNext((a) => {
      a.signatureCrc32c = String((Number(a.signatureCrc32c) + 1) % 2 ** 32);
    });
    const err = await caught(signer().sign(input));
    expect(err.code).toBe("SignerUnavailable");
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/CRC32C/);
  });

  it("refuses a signature whose bytes were altered but not its CRC32C", async () => {
    kms.tamperNext((a) => {
      const sig = Buffer.from(a.signature as string, "base64");
      sig[0] = (sig[0] ?? 0) ^ 1;
      a.signature = sig.toString("base64");
    });
    expect((await caught(signer().sign(input))).code).toBe("SignerUnavailable");
  });

  it("refuses an answer whose digest CRC32C was not verified", async () => {
    kms.tamperNext((a) => {
      a.verifiedDigestCrc32c = false;
    });
    expect((await caught(signer().sign(input))).code).toBe("SignerUnavailable");
  });

  it("refuses an answer signed by another key version", async () => {
    kms.tamperNext((a) => {
      a.name = `${cryptoKey}/cryptoKeyVersions/99`;
    });
    expect((await caught(signer().sign(input))).code).toBe("SignerKeyNotFound");
  });

  it("the fake refuses what Cloud KMS refuses: unknown fields, a wrong digest length, a wrong CRC32C", async () => {
    const post = (body: unknown) =>
      fetch(`${kms.url}/v1/${v1}:asymmetricSign`, {
        method: "POST",
        headers: { authorization: `Bearer ${kms.token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const unknown = await post({ digest: { sha256: sha256(input).toString("base64") }, extra: 1 });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: { status: string } }).error.status).toBe("INVALID_ARGUMENT");
    expect((await post({ digest: { sha256: Buffer.alloc(31).toString("base64") } })).status).toBe(400);
    expect((await post({ digest: { sha384: Buffer.alloc(48).toString("base64") } })).status).toBe(400);
    expect(
      (await post({ digest: { sha256: Buffer.alloc(32).toString("base64") }, digestCrc32c: "1" })).status,
    ).toBe(400);
    const ok = await post({ digest: { sha256: Buffer.alloc(32).toString("base64") } });
    expect(((await ok.json()) as { verifiedDigestCrc32c: boolean }).verifiedDigestCrc32c).toBe(false);
  });

  describe("classifies Google's errors", () => {
    it("PERMISSION_DENIED (403) is SignerDenied", async () => {
      kms.deny = true;
      const err = await caught(signer().sign(input));
      expect(err.code).toBe("SignerDenied");
      expect(err.status).toBe(403);
      expect(err.message).toContain("cloudkms.cryptoKeyVersions.useToSign");
      expect(err.retryable).toBe(false);
    });

    it("UNAUTHENTICATED (401, a token the service does not accept) is SignerDenied", async () => {
      const err = await caught(
        signer({}, { auth: { getAccessToken: async () => "ya29.not-this-one" } }).sign(input),
      );
      expect(err.code).toBe("SignerDenied");
      expect(err.status).toBe(401);
    });

    it("NOT_FOUND is SignerKeyNotFound", async () => {
      const err = await caught(signer({ keyVersion: `${cryptoKey}/cryptoKeyVersions/42` }).sign(input));
      expect(err.code).toBe("SignerKeyNotFound");
      expect(err.status).toBe(404);
    });

    it("a disabled or destroyed version (FAILED_PRECONDITION) is SignerKeyNotFound", async () => {
      const key = "projects/ghat-test/locations/europe-west1/keyRings/ghat/cryptoKeys/off";
      const disabled = kms.addVersion(key);
      const destroyed = kms.addVersion(key);
      kms.disable(disabled);
      kms.destroy(destroyed);
      for (const keyVersion of [disabled, destroyed]) {
        const err = await caught(signer({ keyVersion }).sign(input));
        expect(err.code).toBe("SignerKeyNotFound");
        expect(err.status).toBe(400);
        expect(err.message).toMatch(/DISABLED|DESTROYED/);
      }
    });

    it("a key of another purpose or algorithm is SignerKeyNotFound", async () => {
      const symmetric = kms.addVersion(
        "projects/ghat-test/locations/europe-west1/keyRings/ghat/cryptoKeys/sym",
        "GOOGLE_SYMMETRIC_ENCRYPTION",
      );
      expect((await caught(signer({ keyVersion: symmetric }).sign(input))).code).toBe("SignerKeyNotFound");
      const sha512 = kms.addVersion(
        "projects/ghat-test/locations/europe-west1/keyRings/ghat/cryptoKeys/sha512",
        "RSA_SIGN_PKCS1_4096_SHA512",
      );
      const err = await caught(signer({ keyVersion: sha512 }).sign(input));
      expect(err.code).toBe("SignerKeyNotFound");
      expect(err.message).toMatch(/does not match key algorithm/);
      expect((await caught(signer({ keyVersion: sha512 }).publicKey())).code).toBe("SignerKeyNotFound");
      const pss = kms.addVersion(
        "projects/ghat-test/locations/europe-west1/keyRings/ghat/cryptoKeys/pss",
        "RSA_SIGN_PSS_2048_SHA256",
      );
      const pssErr = await caught(signer({ keyVersion: pss }).publicKey());
      expect(pssErr.code).toBe("SignerKeyNotFound");
      expect(pssErr.message).toContain("RSA_SIGN_PSS_2048_SHA256");
    });

    it("500, 503 and 429 are SignerUnavailable (retryable)", async () => {
      for (const status of [500, 503, 429] as const) {
        kms.failNext(status);
        const err = await caught(signer().sign(input));
        expect(err.code).toBe("SignerUnavailable");
        expect(err.status).toBe(status);
        expect(err.retryable).toBe(true);
      }
    });

    it("a closed port is SignerUnavailable", async () => {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      const err = await caught(signer({ endpoint: `http://127.0.0.1:${port}` }).sign(input));
      expect(err.code).toBe("SignerUnavailable");
    });

    it("refuses a huge answer and a redirect", async () => {
      kms.hijackNext((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(`{"signature":"${"A".repeat(400 * 1024)}"}`);
      });
      const huge = await caught(signer().sign(input));
      expect(huge.code).toBe("SignerUnavailable");
      expect(huge.message).toMatch(/more than/);
      kms.hijackNext((_req, res) => {
        res.writeHead(307, { location: `${kms.url}/v1/${v1}:asymmetricSign` }).end();
      });
      const redirect = await caught(signer().sign(input));
      expect(redirect.code).toBe("SignerUnavailable");
      expect(redirect.message).toMatch(/redirect/);
    });
  });

  describe("access tokens", () => {
    it("a token endpoint that is down is SignerUnavailable; refused credentials are SignerDenied", async () => {
      const down = Object.assign(new Error("request failed"), { response: { status: 503 } });
      const unavailable = await caught(
        signer({}, { auth: { getAccessToken: () => Promise.reject(down) } }).sign(input),
      );
      expect(unavailable.code).toBe("SignerUnavailable");
      const unreachable = Object.assign(new Error("connect ECONNREFUSED 169.254.169.254:80"), {
        code: "ECONNREFUSED",
      });
      expect(
        (
          await caught(
            signer({}, { auth: { getAccessToken: () => Promise.reject(unreachable) } }).sign(input),
          )
        ).code,
      ).toBe("SignerUnavailable");
      const refused = Object.assign(new Error(`invalid_grant ${kms.token}`), { response: { status: 400 } });
      const denied = await caught(
        signer({}, { auth: { getAccessToken: () => Promise.reject(refused) } }).sign(input),
      );
      expect(denied.code).toBe("SignerDenied");
      const none = new Error(
        "Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.",
      );
      const noCreds = await caught(
        signer({}, { auth: { getAccessToken: () => Promise.reject(none) } }).sign(input),
      );
      expect(noCreds.code).toBe("SignerDenied");
      expect(noCreds.message).toMatch(/no Google credentials/);
      expect(
        (await caught(signer({}, { auth: { getAccessToken: async () => null } }).sign(input))).code,
      ).toBe("SignerDenied");
    });

    it("a token source that hangs is cut at the deadline", async () => {
      const s = createGcpKmsSigner(
        { keyVersion: v1, endpoint: kms.url },
        { ...ctx, timeoutMs: 100 },
        {
          auth: { getAccessToken: () => new Promise<string>(() => undefined) },
        },
      );
      signers.push(s);
      expect((await caught(s.sign(input))).code).toBe("SignerUnavailable");
    });

    it("gets its token from application default credentials: the GCE metadata server (Workload Identity)", async () => {
      const home = mkdtempSync(join(tmpdir(), "ghat-gcp-home-"));
      try {
        vi.stubEnv("GOOGLE_APPLICATION_CREDENTIALS", undefined);
        vi.stubEnv("METADATA_SERVER_DETECTION", undefined);
        vi.stubEnv("CLOUDSDK_CONFIG", join(home, "gcloud"));
        vi.stubEnv("HOME", home);
        vi.stubEnv("GCE_METADATA_HOST", kms.metadataHost);
        const before = kms.metadataRequests.length;
        // The first use imports google-auth-library: generous on a loaded machine.
        const s = createGcpKmsSigner({ keyVersion: v1, endpoint: kms.url }, { ...ctx, timeoutMs: 15_000 });
        signers.push(s);
        const signature = await s.sign(input);
        expect(verify("sha256", input, kms.publicKeyOf(v1), signature)).toBe(true);
        const asked = kms.metadataRequests.slice(before);
        expect(
          asked.some((p) => p.startsWith("/computeMetadata/v1/instance/service-accounts/default/token")),
        ).toBe(true);
        expect(asked.join(" ")).toContain(
          encodeURIComponent("https://www.googleapis.com/auth/cloud-platform"),
        );
        expect(kms.requests.at(-1)?.authorization).toBe(`Bearer ${kms.token}`);
      } finally {
        vi.unstubAllEnvs();
        rmSync(home, { recursive: true, force: true });
      }
    });
  });

  describe("google-auth-library is loaded only when needed", () => {
    it("is not imported statically by the signer's module", () => {
      const source = readFileSync(new URL("../../src/signer/gcpkms.ts", import.meta.url), "utf8");
      expect(source).not.toMatch(/^import[^;]*from\s+"google-auth-library"/m);
      expect(source).toMatch(/await import\("google-auth-library"\)/);
    });

    it("importing the module does not load it (seen by a module resolution hook)", () => {
      const script = `
        import { registerHooks } from "node:module";
        const seen = [];
        registerHooks({ resolve(specifier, context, next) { seen.push(specifier); return next(specifier, context); } });
        const mod = await import(${JSON.stringify(new URL("../../src/signer/gcpkms.ts", import.meta.url).href)});
        mod.createGcpKmsSigner({ keyVersion: "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1" }, { timeoutMs: 1000 });
        const before = seen.filter((s) => /google-auth-library|gaxios|gcp-metadata/.test(s));
        await import("google-auth-library");
        const after = seen.filter((s) => /google-auth-library|gaxios|gcp-metadata/.test(s));
        console.log(JSON.stringify({ before, after: after.length }));
      `;
      const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
        cwd: new URL("../..", import.meta.url).pathname,
        encoding: "utf8",
      });
      const { before, after } = JSON.parse(out.trim().split("\n").at(-1) ?? "{}");
      expect(before).toEqual([]);
      // The hook does see the library when something does load it.
      expect(after).toBeGreaterThan(0);
    });
  });
});

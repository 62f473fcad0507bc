import { generateKeyPairSync, sign as rsaSign } from "node:crypto";
import { compactVerify } from "jose";
import { describe, expect, it } from "vitest";
import type { SignerSpec } from "../../../src/api/signer.ts";
import { AppResolver } from "../../../src/controller/apps.ts";
import { GhatError } from "../../../src/core/errors.ts";
import { signAppJwt } from "../../../src/github/jwt.ts";
import { SignerRegistry, usesOperatorIdentity } from "../../../src/signer/registry.ts";
import type { AppSigner } from "../../../src/signer/types.ts";
import { FakeClock } from "../fakeclock.ts";

const app = generateKeyPairSync("rsa", { modulusLength: 2048 });
const other = generateKeyPairSync("rsa", { modulusLength: 2048 });
const small = generateKeyPairSync("rsa", { modulusLength: 1024 });

/** A signer holding a local key, standing in for a KMS; `publicKey` may be another key. */
function localSigner(
  id: string,
  keys = app,
  published = keys.publicKey,
): AppSigner & { signed: number; closed: number } {
  const s = {
    id,
    kind: "awsKms" as const,
    signed: 0,
    closed: 0,
    async sign(input: Uint8Array) {
      s.signed++;
      return new Uint8Array(rsaSign("sha256", input, keys.privateKey));
    },
    async publicKey() {
      return published;
    },
    async close() {
      s.closed++;
    },
  };
  return s;
}

const kms = (keyId: string): SignerSpec => ({ awsKms: { keyId } });

function registry(build: (spec: SignerSpec) => Promise<AppSigner>, observed: string[] = []) {
  return new SignerRegistry({
    clock: new FakeClock(),
    timeoutMs: 1_000,
    pkcs11Modules: [],
    serviceAccountToken: async () => undefined,
    readSecret: async () => undefined,
    observe: (kind, result) => observed.push(`${kind}:${result}`),
    build: async (_kind, spec) => build(spec),
  });
}

describe("signer registry", () => {
  it("builds a signer once per App and spec, checks it once, and signs JWTs GitHub can verify", async () => {
    const built: string[] = [];
    const observed: string[] = [];
    const r = registry(async (spec) => {
      built.push(spec.awsKms?.keyId ?? "");
      return localSigner(`kms:${spec.awsKms?.keyId}`);
    }, observed);
    const a = await r.get("ClusterGitHubApp//acme", kms("k1"), "ghat-system");
    const b = await r.get("ClusterGitHubApp//acme", kms("k1"), "ghat-system");
    expect(a).toBe(b);
    expect(built).toEqual(["k1"]);
    // The check signed one probe.
    expect(observed).toEqual(["awsKms:ok"]);
    const jwt = await signAppJwt({
      key: a,
      issuer: 42,
      nowMs: Date.parse("2026-12-01T00:00:00Z"),
      offsetMs: 0,
    });
    const { payload, protectedHeader } = await compactVerify(jwt, app.publicKey);
    expect(protectedHeader).toEqual({ alg: "RS256", typ: "JWT" });
    expect(JSON.parse(new TextDecoder().decode(payload))).toMatchObject({ iss: 42 });
  });

  it("a changed spec builds a new signer and closes the old one", async () => {
    const signers: ReturnType<typeof localSigner>[] = [];
    const r = registry(async (spec) => {
      const s = localSigner(`kms:${spec.awsKms?.keyId}`);
      signers.push(s);
      return s;
    });
    await r.get("GitHubApp/team/a", kms("k1"), "team");
    const second = await r.get("GitHubApp/team/a", kms("k2"), "team");
    expect(second.id).toBe("kms:k2");
    await expect.poll(() => signers[0]?.closed).toBe(1);
    r.forget("GitHubApp/team/a");
    await expect.poll(() => signers[1]?.closed).toBe(1);
  });

  it("refuses a key whose published public key does not verify its signatures", async () => {
    const r = registry(async () => localSigner("kms:wrong", app, other.publicKey));
    await expect(r.get("X//a", kms("k"), "ns")).rejects.toMatchObject({
      code: "SignerKeyNotFound",
      message: expect.stringContaining("does not verify"),
    });
  });

  it("refuses an RSA key shorter than 2048 bits and a key that is not RSA", async () => {
    const r = registry(async () => localSigner("kms:small", small));
    await expect(r.get("X//a", kms("k"), "ns")).rejects.toMatchObject({ code: "SignerKeyNotFound" });
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const r2 = registry(async () => ({ ...localSigner("kms:ec"), publicKey: async () => ec.publicKey }));
    await expect(r2.get("X//a", kms("k"), "ns")).rejects.toMatchObject({
      code: "SignerKeyNotFound",
      message: expect.stringContaining("ec"),
    });
  });

  it("does not cache a failed build: the next use tries again", async () => {
    let attempts = 0;
    const r = registry(async () => {
      attempts++;
      if (attempts === 1) throw new GhatError("SignerUnavailable", "KMS did not answer: ECONNREFUSED");
      return localSigner("kms:k");
    });
    await expect(r.get("X//a", kms("k"), "ns")).rejects.toMatchObject({ code: "SignerUnavailable" });
    await expect(r.get("X//a", kms("k"), "ns")).resolves.toMatchObject({ id: "kms:k" });
    expect(attempts).toBe(2);
  });

  it("counts failed signatures by their reason", async () => {
    const observed: string[] = [];
    const r = registry(
      async () => ({
        id: "kms:down",
        kind: "awsKms",
        sign: async () => {
          throw new GhatError("SignerDenied", "KMS answered 400: AccessDeniedException");
        },
        publicKey: async () => undefined,
      }),
      observed,
    );
    const s = await r.get("X//a", kms("k"), "ns");
    await expect(s.sign(new Uint8Array([1]))).rejects.toMatchObject({ code: "SignerDenied" });
    expect(observed).toEqual(["awsKms:SignerDenied"]);
  });

  it("knows which signers use the operator's own identity", () => {
    expect(usesOperatorIdentity(kms("k"))).toBe(true);
    expect(
      usesOperatorIdentity({
        gcpKms: { keyVersion: "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1" },
      }),
    ).toBe(true);
    expect(
      usesOperatorIdentity({ azureKeyVault: { vaultUrl: "https://v.vault.azure.net", keyName: "k" } }),
    ).toBe(true);
    const vault = (auth: object): SignerSpec =>
      ({
        vaultTransit: { address: "https://vault:8200", mount: "transit", keyName: "k", auth },
      }) as SignerSpec;
    expect(usesOperatorIdentity(vault({ kubernetes: { role: "ghat", mount: "kubernetes" } }))).toBe(true);
    expect(usesOperatorIdentity(vault({ tokenSecretRef: { name: "vault-token", key: "token" } }))).toBe(
      false,
    );
  });
});

describe("an App with a signer", () => {
  function resolver(spec: Record<string, unknown>, kind: "GitHubApp" | "ClusterGitHubApp", allow = false) {
    const built: string[] = [];
    const signers = registry(async (s) => {
      built.push(JSON.stringify(s));
      return localSigner("signer-1");
    });
    const r = new AppResolver({
      operatorNamespace: "ghat-system",
      installationOwner: async () => "acme",
      fingerprint: () => "fp",
      parseKey: () => {
        throw new Error("no key Secret is read for a signer");
      },
      source: {
        app: () => ({
          apiVersion: "ghat.dev/v1alpha1",
          kind,
          metadata: { name: "acme", ...(kind === "GitHubApp" ? { namespace: "team" } : {}) },
          spec: { appId: 42, ...spec },
        }),
        keySecret: async () => undefined,
        namespaceLabels: () => ({}),
      },
      signers,
      namespacedAmbientSigners: allow,
    });
    return { r, built };
  }

  it("a namespaced GitHubApp may not borrow the operator's cloud identity", async () => {
    const { r, built } = resolver({ signer: kms("arn:aws:kms:eu-west-1:1:key/platform") }, "GitHubApp");
    const res = await r.resolveApp("GitHubApp", "team", "acme");
    expect(res).toMatchObject({
      ok: false,
      code: "NotPermitted",
      message: expect.stringContaining("ClusterGitHubApp"),
    });
    expect(built).toEqual([]);
  });

  it("the platform can allow it with --namespaced-ambient-signers", async () => {
    const { r } = resolver({ signer: kms("k") }, "GitHubApp", true);
    await expect(r.resolveApp("GitHubApp", "team", "acme")).resolves.toMatchObject({
      ok: true,
      app: { keyId: "signer-1" },
    });
  });

  it("a namespaced GitHubApp may sign with Vault using its own token", async () => {
    const { r } = resolver(
      {
        signer: {
          vaultTransit: {
            address: "https://vault.team:8200",
            mount: "transit",
            keyName: "app",
            auth: { tokenSecretRef: { name: "vault-token", key: "token" } },
          },
        },
      },
      "GitHubApp",
    );
    await expect(r.resolveApp("GitHubApp", "team", "acme")).resolves.toMatchObject({ ok: true });
  });

  it("a ClusterGitHubApp may use the operator's identity", async () => {
    const { r } = resolver({ signer: kms("k") }, "ClusterGitHubApp");
    const res = await r.resolveApp("ClusterGitHubApp", "", "acme");
    expect(res).toMatchObject({ ok: true, app: { keyId: "signer-1", kind: "ClusterGitHubApp" } });
  });

  it("an App with both a key Secret and a signer is refused with a readable message", async () => {
    const { r } = resolver({ signer: kms("k"), privateKeySecretRef: { name: "key" } }, "ClusterGitHubApp");
    const res = await r.resolveApp("ClusterGitHubApp", "", "acme");
    expect(res).toMatchObject({ ok: false, code: "InvalidSpec" });
  });
});

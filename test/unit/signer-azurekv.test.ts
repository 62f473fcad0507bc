import { execFileSync } from "node:child_process";
import { createHash, verify } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getCACertificates, setDefaultCACertificates } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AzureKeyVaultSigner } from "../../src/api/signer.ts";
import { GhatError } from "../../src/core/errors.ts";
import { type AzureKeyVaultSignerOptions, createAzureKeyVaultSigner } from "../../src/signer/azurekv.ts";
import type { AppSigner, SignerContext } from "../../src/signer/types.ts";
import { type FakeKeyVault, startFakeKeyVault } from "../support/azurekv-server.ts";
import { FakeClock } from "./fakeclock.ts";

const input = new TextEncoder().encode(
  "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjEsImV4cCI6MiwiaXNzIjoxfQ",
);

let kv: FakeKeyVault;
let v1: string;
const signers: AppSigner[] = [];
const messages: string[] = [];
const scopes: string[] = [];

const ctx: SignerContext = {
  clock: new FakeClock(),
  timeoutMs: 5_000,
  readSecret: async () => undefined,
  serviceAccountToken: async () => undefined,
};

function signer(
  spec: Partial<AzureKeyVaultSigner> = {},
  options: AzureKeyVaultSignerOptions = {},
): AppSigner {
  const s = createAzureKeyVaultSigner({ vaultUrl: kv.url, keyName: "app", ...spec }, ctx, {
    caBundle: kv.ca,
    credential: {
      getToken: async (scope) => {
        scopes.push(String(scope));
        return { token: kv.token };
      },
    },
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
  kv = await startFakeKeyVault();
  v1 = kv.addVersion("app");
});
afterEach(() => {
  kv.deny = false;
});
afterAll(async () => {
  await Promise.all(signers.map((s) => s.close?.()));
  await kv.close();
  for (const m of messages) {
    expect(m).not.toContain(kv.token);
    expect(m).not.toContain(kv.federatedToken);
  }
});

describe("Azure Key Vault signer", () => {
  it("signs the digest with RS256 at the named version, verifiable with the key's public key", async () => {
    const s = signer({ keyVersion: v1 });
    const signature = await s.sign(input);
    expect(verify("sha256", input, kv.publicKeyOf("app", v1), signature)).toBe(true);
    const publicKey = await s.publicKey();
    expect(publicKey?.equals(kv.publicKeyOf("app", v1))).toBe(true);
    expect(s.id).toBe(`azureKeyVault:${kv.url}/keys/app/${v1}`);
    expect(scopes.at(-1)).toBe("https://vault.azure.net/.default");

    const [signReq, keyReq] = kv.requests.slice(-2);
    expect(signReq?.method).toBe("POST");
    expect(signReq?.path).toBe(`/keys/app/${v1}/sign?api-version=7.5`);
    expect(signReq?.authorization).toBe(`Bearer ${kv.token}`);
    expect(signReq?.body).toEqual({
      alg: "RS256",
      value: createHash("sha256").update(input).digest().toString("base64url"),
    });
    expect(keyReq?.method).toBe("GET");
    expect(keyReq?.path).toBe(`/keys/app/${v1}?api-version=7.5`);
  });

  it("with the version unset, signs with the current version and picks up a rotation", async () => {
    const key = "rotating";
    const first = kv.addVersion(key);
    const s = signer({ keyName: key });
    expect(s.id).toBe(`azureKeyVault:${kv.url}/keys/${key}`);
    expect(verify("sha256", input, kv.publicKeyOf(key, first), await s.sign(input))).toBe(true);
    // The current version is read first (documented optional on GET), then named on sign.
    expect(kv.requests.slice(-2).map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /keys/${key}?api-version=7.5`,
      `POST /keys/${key}/${first}/sign?api-version=7.5`,
    ]);

    const second = kv.addVersion(key);
    const signature = await s.sign(input);
    expect(verify("sha256", input, kv.publicKeyOf(key, second), signature)).toBe(true);
    expect(verify("sha256", input, kv.publicKeyOf(key, first), signature)).toBe(false);
    expect((await s.publicKey())?.equals(kv.publicKeyOf(key, second))).toBe(true);
  });

  it("refuses a signature made with another key than the one asked for", async () => {
    kv.tamperNext((a) => {
      a.kid = `${kv.url}/keys/other/${v1}`;
    });
    expect((await caught(signer({ keyVersion: v1 }).sign(input))).code).toBe("SignerKeyNotFound");
    kv.tamperNext((a) => {
      a.value = "not base64url!";
    });
    expect((await caught(signer({ keyVersion: v1 }).sign(input))).code).toBe("SignerUnavailable");
  });

  it("the fake refuses what Key Vault refuses: unknown fields, a wrong digest length, a wrong alg, no api-version", async () => {
    const post = (body: unknown, query = "?api-version=7.5") =>
      new Promise<{ status: number; body: { error: { code: string } } }>((resolve, reject) => {
        // node:https rather than fetch, to trust the fake's certificate for this request only.
        import("node:https").then(({ request }) => {
          const req = request(
            `${kv.url}/keys/app/${v1}/sign${query}`,
            {
              method: "POST",
              ca: kv.ca,
              headers: { authorization: `Bearer ${kv.token}`, "content-type": "application/json" },
            },
            (res) => {
              let text = "";
              res.on("data", (c) => {
                text += c;
              });
              res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
            },
          );
          req.on("error", reject);
          req.end(JSON.stringify(body));
        }, reject);
      });
    const digest = createHash("sha256").update(input).digest().toString("base64url");
    for (const [body, query] of [
      [{ alg: "RS256", value: digest, extra: true }, undefined],
      [{ alg: "RS256", value: Buffer.alloc(31).toString("base64url") }, undefined],
      [{ alg: "RS999", value: digest }, undefined],
      [{ alg: "RS256", value: digest }, ""],
    ] as const) {
      const answer = await post(body, query);
      expect(answer.status).toBe(400);
      expect(answer.body.error.code).toBe("BadParameter");
    }
  });

  describe("classifies Key Vault's errors", () => {
    it("403 Forbidden (RBAC, access policy) is SignerDenied", async () => {
      kv.deny = true;
      const err = await caught(signer({ keyVersion: v1 }).sign(input));
      expect(err.code).toBe("SignerDenied");
      expect(err.status).toBe(403);
      expect(err.message).toContain("not authorized");
    });

    it("401 (AKV10032, a token the vault does not accept) is SignerDenied", async () => {
      const s = signer(
        { keyVersion: v1 },
        { credential: { getToken: async () => ({ token: "eyJ.not-this.one" }) } },
      );
      const err = await caught(s.sign(input));
      expect(err.code).toBe("SignerDenied");
      expect(err.status).toBe(401);
      expect(err.message).toContain("AKV10032");
    });

    it("404 KeyNotFound, for a key or a version, is SignerKeyNotFound", async () => {
      expect((await caught(signer({ keyName: "missing" }).sign(input))).code).toBe("SignerKeyNotFound");
      const err = await caught(signer({ keyVersion: "0123456789abcdef0123456789abcdef" }).sign(input));
      expect(err.code).toBe("SignerKeyNotFound");
      expect(err.status).toBe(404);
    });

    it("a disabled key version is SignerKeyNotFound", async () => {
      const version = kv.addVersion("disabled");
      kv.disable("disabled", version);
      const err = await caught(signer({ keyName: "disabled", keyVersion: version }).sign(input));
      expect(err.code).toBe("SignerKeyNotFound");
      expect(err.status).toBe(403);
      expect((await caught(signer({ keyName: "disabled" }).sign(input))).code).toBe("SignerKeyNotFound");
    });

    it("a key that is not RSA, or may not sign, is SignerKeyNotFound", async () => {
      const ec = kv.addVersion("ec", { kty: "EC" });
      const err = await caught(signer({ keyName: "ec", keyVersion: ec }).sign(input));
      expect(err.code).toBe("SignerKeyNotFound");
      expect(err.status).toBe(400);
      expect((await caught(signer({ keyName: "ec" }).publicKey())).code).toBe("SignerKeyNotFound");
      const wrapOnly = kv.addVersion("wrap", { keyOps: ["wrapKey", "unwrapKey"] });
      expect((await caught(signer({ keyName: "wrap" }).publicKey())).code).toBe("SignerKeyNotFound");
      expect((await caught(signer({ keyName: "wrap", keyVersion: wrapOnly }).sign(input))).code).toBe(
        "SignerKeyNotFound",
      );
      const hsm = kv.addVersion("hsm", { kty: "RSA-HSM" });
      expect((await signer({ keyName: "hsm" }).publicKey())?.equals(kv.publicKeyOf("hsm", hsm))).toBe(true);
    });

    it("500, 503 and 429 are SignerUnavailable (retryable)", async () => {
      for (const status of [500, 503, 429] as const) {
        kv.failNext(status);
        const err = await caught(signer({ keyVersion: v1 }).sign(input));
        expect(err.code).toBe("SignerUnavailable");
        expect(err.status).toBe(status);
        expect(err.retryable).toBe(true);
      }
    });

    it("a closed port, or a certificate not trusted, is SignerUnavailable", async () => {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      expect(
        (await caught(signer({ vaultUrl: `https://127.0.0.1:${port}`, keyVersion: v1 }).sign(input))).code,
      ).toBe("SignerUnavailable");
      const untrusted = await caught(signer({ keyVersion: v1 }, { caBundle: undefined }).sign(input));
      expect(untrusted.code).toBe("SignerUnavailable");
    });

    it("refuses a huge answer and a redirect", async () => {
      kv.hijackNext((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(`{"value":"${"A".repeat(400 * 1024)}"}`);
      });
      const huge = await caught(signer({ keyVersion: v1 }).sign(input));
      expect(huge.code).toBe("SignerUnavailable");
      expect(huge.message).toMatch(/more than/);
      kv.hijackNext((_req, res) => {
        res.writeHead(302, { location: "https://elsewhere.example/keys/app" }).end();
      });
      const redirect = await caught(signer({ keyVersion: v1 }).sign(input));
      expect(redirect.code).toBe("SignerUnavailable");
      expect(redirect.message).toMatch(/redirect/);
    });
  });

  describe("tokens", () => {
    it("asks for the scope of the vault's cloud", async () => {
      const s = signer(
        { vaultUrl: "https://my-vault.vault.usgovcloudapi.net" },
        { fetch: async () => Promise.reject(new Error("offline")) },
      );
      await caught(s.sign(input));
      expect(scopes.at(-1)).toBe("https://vault.usgovcloudapi.net/.default");
    });

    it("Entra ID down is SignerUnavailable; no credential or a refused one is SignerDenied", async () => {
      const fail = (err: unknown) =>
        signer({ keyVersion: v1 }, { credential: { getToken: () => Promise.reject(err) } });
      const down = Object.assign(new Error("AuthenticationError"), {
        name: "AuthenticationError",
        statusCode: 503,
      });
      expect((await caught(fail(down).sign(input))).code).toBe("SignerUnavailable");
      const refused = Object.assign(new Error(`AADSTS700211 ${kv.federatedToken}`), {
        name: "AuthenticationError",
        statusCode: 400,
      });
      const denied = await caught(fail(refused).sign(input));
      expect(denied.code).toBe("SignerDenied");
      const none = Object.assign(new Error("WorkloadIdentityCredential: is not set"), {
        name: "CredentialUnavailableError",
      });
      expect((await caught(fail(none).sign(input))).code).toBe("SignerDenied");
      const nullToken = signer({ keyVersion: v1 }, { credential: { getToken: async () => null } });
      expect((await caught(nullToken.sign(input))).code).toBe("SignerDenied");
    });

    it("gets its token through @azure/identity's workload identity from an Entra ID token endpoint", async () => {
      const dir = mkdtempSync(join(tmpdir(), "ghat-akv-wi-"));
      const defaults = getCACertificates("default");
      // MSAL insists on an https authority; the fake's certificate is trusted process-wide here.
      setDefaultCACertificates([...defaults, kv.ca]);
      try {
        const tokenFile = join(dir, "azure-identity-token");
        writeFileSync(tokenFile, kv.federatedToken);
        const env = {
          AZURE_AUTHORITY_HOST: `${kv.url}/`,
          AZURE_TENANT_ID: kv.tenantId,
          AZURE_CLIENT_ID: kv.clientId,
          AZURE_FEDERATED_TOKEN_FILE: tokenFile,
        };
        const s = createAzureKeyVaultSigner(
          { vaultUrl: kv.url, keyName: "app", keyVersion: v1 },
          { ...ctx, env },
        );
        signers.push(s);
        const signature = await s.sign(input);
        expect(verify("sha256", input, kv.publicKeyOf("app", v1), signature)).toBe(true);
        const asked = kv.tokenRequests.at(-1);
        expect(asked).toMatchObject({
          grant_type: "client_credentials",
          client_id: kv.clientId,
          scope: "https://vault.azure.net/.default",
          client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        });
        expect(kv.requests.at(-1)?.authorization).toBe(`Bearer ${kv.token}`);

        // A federated token the endpoint does not accept: refused, and the token is not quoted.
        const badFile = join(dir, "bad-token");
        writeFileSync(badFile, "eyJhbGciOiJSUzI1NiJ9.bm90LXRoaXMtb25l.sig");
        const refused = createAzureKeyVaultSigner(
          { vaultUrl: kv.url, keyName: "app", keyVersion: v1 },
          { ...ctx, env: { ...env, AZURE_FEDERATED_TOKEN_FILE: badFile } },
        );
        signers.push(refused);
        const err = await caught(refused.sign(input));
        expect(err.code).toBe("SignerDenied");

        // An authority that cannot be reached: retried.
        const closed = createServer();
        await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
        const port = (closed.address() as AddressInfo).port;
        await new Promise<void>((resolve) => closed.close(() => resolve()));
        const unreachable = createAzureKeyVaultSigner(
          { vaultUrl: kv.url, keyName: "app", keyVersion: v1 },
          { ...ctx, env: { ...env, AZURE_AUTHORITY_HOST: `https://127.0.0.1:${port}/` } },
        );
        signers.push(unreachable);
        const down = await caught(unreachable.sign(input));
        expect(down.code).toBe("SignerUnavailable");
        expect(down.message).toMatch(/could not be reached|timed out/);
      } finally {
        setDefaultCACertificates(defaults);
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe("@azure/identity is loaded only when needed", () => {
    it("is not imported statically by the signer's module", () => {
      const source = readFileSync(new URL("../../src/signer/azurekv.ts", import.meta.url), "utf8");
      expect(source).not.toMatch(/^import[^;]*from\s+"@azure\//m);
      expect(source).toMatch(/await import\("@azure\/identity"\)/);
    });

    it("importing the module does not load it (seen by a module resolution hook)", () => {
      const script = `
        import { registerHooks } from "node:module";
        const seen = [];
        registerHooks({ resolve(specifier, context, next) { seen.push(specifier); return next(specifier, context); } });
        const mod = await import(${JSON.stringify(new URL("../../src/signer/azurekv.ts", import.meta.url).href)});
        mod.createAzureKeyVaultSigner({ vaultUrl: "https://v.vault.azure.net", keyName: "k" }, { timeoutMs: 1000 });
        const before = seen.filter((s) => s.startsWith("@azure/"));
        await import("@azure/identity");
        console.log(JSON.stringify({ before, after: seen.filter((s) => s.startsWith("@azure/")).length }));
      `;
      const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
        cwd: new URL("../..", import.meta.url).pathname,
        encoding: "utf8",
      });
      const { before, after } = JSON.parse(out.trim().split("\n").at(-1) ?? "{}");
      expect(before).toEqual([]);
      expect(after).toBeGreaterThan(0);
    });
  });
});

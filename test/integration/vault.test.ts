/**
 * The Vault transit signer against a contract server, NOT against Vault. The server
 * (test/support/vault-server.ts) is written from Vault's published HTTP API reference
 * (https://developer.hashicorp.com/vault/api-docs/secret/transit and
 * https://developer.hashicorp.com/vault/api-docs/auth/kubernetes): real RSA signatures, a real
 * BYOK unwrap of imported keys, ACL policies enforced on non-root tokens, and Kubernetes auth
 * that sends a real TokenReview to the test control plane's API server. It is not Vault because
 * no Vault could be built here: no Vault release builds from the Go module proxy (v1.21.4 and
 * v1.21.2 need an unpublished vault/sdk; v1.20.4's plugin catalog needs a field no published sdk
 * has), and OpenBao v2.x, which does build, answers 403 where these tests need Vault's answers.
 * What these tests show is that ghat speaks the protocol as the reference describes it; error
 * texts the reference does not give are the server's best guesses (see its comments).
 */
import { generateKeyPairSync, type KeyObject, verify } from "node:crypto";
import { jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VaultTransitSigner } from "../../src/api/signer.ts";
import { systemClock } from "../../src/clock.ts";
import { GhatError } from "../../src/core/errors.ts";
import { signAppJwt } from "../../src/github/jwt.ts";
import type { AppSigner, SignerContext } from "../../src/signer/types.ts";
import { createVaultTransitSigner } from "../../src/signer/vault.ts";
import { kubectl, newNamespace } from "../support/cluster.ts";
import {
  configureKubernetesAuth,
  enableTransit,
  importRsaKey,
  importRsaKeyVersion,
  startVault,
  type VaultServer,
} from "../support/vault.ts";

const input = new TextEncoder().encode(
  "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjEsImV4cCI6MiwiaXNzIjoxfQ",
);

let vault: VaultServer;
const signers: AppSigner[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
/** Every credential handed to a signer, and every error message seen, checked at the end. */
const credentials: string[] = [];
const messages: string[] = [];

function rsaKey() {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return { pem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), publicKey };
}
const app = rsaKey();

function context(token: () => string | undefined, saToken?: () => string): SignerContext {
  return {
    clock: systemClock,
    timeoutMs: 10_000,
    readSecret: async () => token(),
    serviceAccountToken: async () => saToken?.(),
  };
}

function signer(ctx: SignerContext, spec: Partial<VaultTransitSigner> = {}): AppSigner {
  const s = createVaultTransitSigner(
    {
      address: vault.address,
      mount: "transit",
      keyName: "app",
      auth: { tokenSecretRef: { name: "vault-token", key: "token" } },
      ...spec,
    },
    ctx,
  );
  signers.push(s);
  return s;
}

const rootCtx = () => context(() => vault.rootToken);

function verifies(signature: Uint8Array, key: KeyObject): boolean {
  return verify("sha256", input, key, signature);
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
  vault = await startVault();
  credentials.push(vault.rootToken);
  await enableTransit(vault);
  await importRsaKey(vault, "app", app.pem);
});

afterAll(async () => {
  await Promise.all(signers.map((s) => s.close?.()));
  for (const c of cleanups.splice(0).reverse()) await c();
  await vault?.close();
  for (const m of messages) for (const c of credentials) expect(m).not.toContain(c);
});

describe("the Vault transit signer against a contract Vault", () => {
  it("signs a JWT with an imported RSA key, read through a token in a Secret", async () => {
    const s = signer(rootCtx());
    const signature = await s.sign(input);
    expect(signature).toHaveLength(256);
    expect(verifies(signature, app.publicKey)).toBe(true);
    const pub = await s.publicKey();
    expect(pub?.export({ type: "spki", format: "pem" })).toBe(
      app.publicKey.export({ type: "spki", format: "pem" }),
    );
    const jwt = await signAppJwt({ key: s, issuer: 12345, nowMs: Date.now(), offsetMs: 0 });
    const { payload, protectedHeader } = await jwtVerify(jwt, app.publicKey);
    expect(protectedHeader.alg).toBe("RS256");
    expect(payload.iss).toBe(12345);
  });

  it("signs with a scoped token whose policy allows only sign and read on the key", async () => {
    await vault.api("PUT", "sys/policies/acl/sign-app", {
      policy:
        'path "transit/sign/app" { capabilities = ["update"] }\npath "transit/keys/app" { capabilities = ["read"] }',
    });
    const created = await vault.api("POST", "auth/token/create", { policies: ["sign-app"], ttl: "10m" });
    const scoped = (created.auth as { client_token: string }).client_token;
    credentials.push(scoped);
    const s = signer(context(() => scoped));
    expect(verifies(await s.sign(input), app.publicKey)).toBe(true);
    expect(await s.publicKey()).toBeDefined();
    // The same token may not sign with another key: denied, not "not found".
    await importRsaKey(vault, "other", rsaKey().pem);
    const other = await caught(
      signer(
        context(() => scoped),
        { keyName: "other" },
      ).sign(input),
    );
    expect(other.code).toBe("SignerDenied");
    expect(other.message).toContain("permission denied");
  });

  it("is SignerDenied for a token Vault does not know", async () => {
    const err = await caught(signer(context(() => "hvs.not-a-real-token-at-all")).sign(input));
    expect(err.code).toBe("SignerDenied");
  });

  it("is SignerKeyNotFound for a missing key and for a key that cannot sign RS256", async () => {
    const missing = await caught(signer(rootCtx(), { keyName: "missing" }).sign(input));
    expect(missing.code).toBe("SignerKeyNotFound");
    const missingPub = await caught(signer(rootCtx(), { keyName: "missing" }).publicKey());
    expect(missingPub.code).toBe("SignerKeyNotFound");
    const badVersion = await caught(signer(rootCtx(), { keyVersion: 9 }).sign(input));
    expect(badVersion.code).toBe("SignerKeyNotFound");
    await vault.api("POST", "transit/keys/aes", { type: "aes256-gcm96" });
    const aes = await caught(signer(rootCtx(), { keyName: "aes" }).sign(input));
    expect(aes.code).toBe("SignerKeyNotFound");
    const aesPub = await caught(signer(rootCtx(), { keyName: "aes" }).publicKey());
    expect(aesPub.code).toBe("SignerKeyNotFound");
    expect(aesPub.message).toContain("aes256-gcm96");
  });

  it("signs with the newest version after an imported rotation when keyVersion is unset", async () => {
    const first = rsaKey();
    const second = rsaKey();
    await importRsaKey(vault, "rotating", first.pem);
    const latest = signer(rootCtx(), { keyName: "rotating" });
    expect(verifies(await latest.sign(input), first.publicKey)).toBe(true);
    await importRsaKeyVersion(vault, "rotating", second.pem);
    const rotated = await latest.sign(input);
    expect(verifies(rotated, second.publicKey)).toBe(true);
    expect(verifies(rotated, first.publicKey)).toBe(false);
    expect((await latest.publicKey())?.export({ type: "spki", format: "pem" })).toBe(
      second.publicKey.export({ type: "spki", format: "pem" }),
    );
    const pinned = signer(rootCtx(), { keyName: "rotating", keyVersion: 1 });
    expect(verifies(await pinned.sign(input), first.publicKey)).toBe(true);
    expect(pinned.id).not.toBe(latest.id);
  });

  describe("Kubernetes auth with a real ServiceAccount token", () => {
    let namespace: string;
    let saToken: string;

    beforeAll(async () => {
      namespace = await newNamespace("vault");
      for (const sa of ["ghat", "reviewer"]) {
        const r = await kubectl(["create", "serviceaccount", sa, "-n", namespace]);
        expect(r.code, r.stderr).toBe(0);
      }
      // Vault checks the client's JWT with a TokenReview, sent with the reviewer's token.
      const binding = `ghat-vault-reviewer-${namespace}`.slice(0, 63);
      const bound = await kubectl([
        "create",
        "clusterrolebinding",
        binding,
        "--clusterrole=system:auth-delegator",
        `--serviceaccount=${namespace}:reviewer`,
      ]);
      expect(bound.code, bound.stderr).toBe(0);
      cleanups.push(() => kubectl(["delete", "clusterrolebinding", binding, "--ignore-not-found"]));
      const token = async (sa: string) => {
        const r = await kubectl(["create", "token", sa, "-n", namespace, "--duration=10m"]);
        expect(r.code, r.stderr).toBe(0);
        return r.stdout.trim();
      };
      saToken = await token("ghat");
      const reviewerJwt = await token("reviewer");
      credentials.push(saToken, reviewerJwt);
      await configureKubernetesAuth(vault, {
        reviewerJwt,
        role: "ghat",
        serviceAccount: "ghat",
        namespace,
        policy: "ghat-app",
        key: "app",
      });
    });

    it("logs in as the ServiceAccount and signs with the key its policy allows", async () => {
      const s = signer(
        context(
          () => undefined,
          () => saToken,
        ),
        { auth: { kubernetes: { role: "ghat", mount: "kubernetes" } } },
      );
      expect(verifies(await s.sign(input), app.publicKey)).toBe(true);
      expect(await s.publicKey()).toBeDefined();
      const other = await caught(
        signer(
          context(
            () => undefined,
            () => saToken,
          ),
          { keyName: "other", auth: { kubernetes: { role: "ghat", mount: "kubernetes" } } },
        ).sign(input),
      );
      expect(other.code).toBe("SignerDenied");
    });

    it("is SignerDenied for a role that does not exist, and for a JWT the API server rejects", async () => {
      const wrongRole = await caught(
        signer(
          context(
            () => undefined,
            () => saToken,
          ),
          { auth: { kubernetes: { role: "nope", mount: "kubernetes" } } },
        ).sign(input),
      );
      expect(wrongRole.code).toBe("SignerDenied");
      const [h, p] = saToken.split(".");
      const forged = `${h}.${p}.${Buffer.alloc(256, 1).toString("base64url")}`;
      credentials.push(forged);
      const bad = await caught(
        signer(
          context(
            () => undefined,
            () => forged,
          ),
          { auth: { kubernetes: { role: "ghat", mount: "kubernetes" } } },
        ).sign(input),
      );
      expect(bad.code).toBe("SignerDenied");
    });

    it("is SignerDenied for a role bound to another ServiceAccount or namespace", async () => {
      await vault.api("POST", "auth/kubernetes/role/other-sa", {
        bound_service_account_names: ["reviewer"],
        bound_service_account_namespaces: [namespace],
        token_policies: ["ghat-app"],
      });
      await vault.api("POST", "auth/kubernetes/role/other-ns", {
        bound_service_account_names: ["ghat"],
        bound_service_account_namespaces: ["kube-system"],
        token_policies: ["ghat-app"],
      });
      for (const role of ["other-sa", "other-ns"]) {
        const err = await caught(
          signer(
            context(
              () => undefined,
              () => saToken,
            ),
            { auth: { kubernetes: { role, mount: "kubernetes" } } },
          ).sign(input),
        );
        expect(err.code).toBe("SignerDenied");
        expect(err.message).toContain("permission denied");
      }
    });
  });

  it("is SignerUnavailable while Vault is down, and signs again once it is back", async () => {
    const s = signer(rootCtx());
    expect(verifies(await s.sign(input), app.publicKey)).toBe(true);
    await vault.stop();
    const down = await caught(s.sign(input));
    expect(down.code).toBe("SignerUnavailable");
    expect(down.retryable).toBe(true);
    // Like a dev-mode Vault, the server keeps nothing across a restart: the key is imported again.
    await vault.restart();
    await enableTransit(vault);
    await importRsaKey(vault, "app", app.pem);
    await expect
      .poll(async () => verifies(await s.sign(input), app.publicKey), { timeout: 30_000, interval: 200 })
      .toBe(true);
  });
});

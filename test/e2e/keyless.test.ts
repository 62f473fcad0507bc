import { createPublicKey, type KeyObject } from "node:crypto";
import { getCACertificates, setDefaultCACertificates } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { group, version } from "../../src/api/meta.ts";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { type FakeKeyVault, startFakeKeyVault } from "../support/azurekv-server.ts";
import { kubectl, newNamespace } from "../support/cluster.ts";
import { type FakeGcpKms, startFakeGcpKms } from "../support/gcpkms-server.ts";
import { type LocalKms, startLocalKms } from "../support/localkms.ts";
import { createSoftHsm, type SoftHsmToken, softHsmModule } from "../support/softhsm.ts";
import {
  enableTransit,
  importRsaKey,
  importRsaKeyVersion,
  startVault,
  type VaultServer,
} from "../support/vault.ts";
import { TcpProxy } from "./faultkit.ts";
import { useOperator } from "./fixture.ts";
import { appId, owner, ready } from "./operator.ts";

const pem = (key: KeyObject) => key.export({ type: "spki", format: "pem" }).toString();

/**
 * Keyless signing end to end: ClusterGitHubApps whose key lives in a KMS or an HSM, the
 * operator in-process on the real API server, the simulator as GitHub knowing only the
 * backends' public keys. AWS KMS is local-kms, PKCS#11 is SoftHSM 2 (both real); Cloud KMS and
 * Key Vault are servers written from their REST references (test/support). The operator never
 * holds a private key: the simulator's own App key is not in any Secret here.
 */
describe("keyless signing", () => {
  // SoftHSM reads SOFTHSM2_CONF once, when the module is first initialised in this process.
  const hsm = createSoftHsm();
  const pkcs11Key = generateAppKeyPair();
  let hsmToken: SoftHsmToken;
  const awsKey = generateAppKeyPair();
  let kms: LocalKms;
  let kmsProxy: TcpProxy;
  let gcp: FakeGcpKms;
  let azure: FakeKeyVault;
  let vault: VaultServer;
  const vaultKey = generateAppKeyPair();
  const env = { ...process.env };
  const fx = useOperator({
    operatorNamespace: true,
    operator: [
      "--pkcs11-module",
      softHsmModule,
      // Every mint signs afresh, so a signer outage shows at the next mint.
      "--app-jwt-reuse",
      "0s",
      "--terminal-retry",
      "2s",
    ],
  });

  beforeAll(async () => {
    hsmToken = hsm.addToken({
      tokenLabel: "ghat-e2e",
      privateKeyPem: pkcs11Key.privateKeyPkcs1Pem,
      keyLabel: "github-app",
    });
    kms = await startLocalKms({ privateKeyPem: awsKey.privateKeyPkcs1Pem, alias: "alias/github-app" });
    kmsProxy = await TcpProxy.start({ host: "127.0.0.1", port: Number(new URL(kms.endpoint).port) });
    vault = await startVault();
    await enableTransit(vault);
    await importRsaKey(vault, "github-app", vaultKey.privateKeyPkcs1Pem);
    gcp = await startFakeGcpKms();
    azure = await startFakeKeyVault();
    // The operator's ambient credentials, as IRSA, Workload Identity and Azure workload identity give them.
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: "AKIAGHATE2E",
      AWS_SECRET_ACCESS_KEY: "ghat-e2e-secret",
      AWS_REGION: kms.region,
      GCE_METADATA_HOST: gcp.metadataHost,
      AZURE_AUTHORITY_HOST: azure.url,
      AZURE_TENANT_ID: azure.tenantId,
      AZURE_CLIENT_ID: azure.clientId,
    });
    const federated = `${hsm.conf}.azure-token`;
    const { writeFileSync } = await import("node:fs");
    writeFileSync(federated, azure.federatedToken);
    process.env.AZURE_FEDERATED_TOKEN_FILE = federated;
    // Key Vault and Entra are HTTPS with a self-signed certificate (Azure is never plain HTTP).
    setDefaultCACertificates([...getCACertificates("default"), azure.ca]);
  }, 300_000);

  afterAll(async () => {
    for (const k of Object.keys(process.env)) if (!(k in env)) delete process.env[k];
    setDefaultCACertificates(getCACertificates("bundled"));
    await kmsProxy?.close();
    await kms?.close();
    await gcp?.close();
    await azure?.close();
    await vault?.close();
    hsm.close();
  });

  /** A ClusterGitHubApp with `signer` that lets namespace `ns` ask for contents:read on acme/*. */
  async function clusterApp(name: string, signer: Record<string, unknown>, ns: string) {
    const body = {
      apiVersion: `${group}/${version}`,
      kind: "ClusterGitHubApp",
      metadata: { name },
      spec: {
        appId,
        baseUrl: fx.github.sim.url,
        signer,
        policy: {
          namespaces: { names: [ns] },
          installations: { owners: [owner] },
          repositories: [`${owner}/*`],
          maxPermissions: { contents: "read", issues: "write" },
        },
      },
    };
    const r = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(body) });
    expect(r.code, r.stderr).toBe(0);
  }

  async function token(
    ns: string,
    name: string,
    app: string,
    permissions: Record<string, string> = { contents: "read" },
  ) {
    const body = {
      apiVersion: `${group}/${version}`,
      kind: "GitHubAppToken",
      metadata: { name },
      spec: {
        appRef: { kind: "ClusterGitHubApp", name: app },
        installation: { owner },
        repositories: ["app"],
        permissions,
        secrets: [{ name: `${name}-token` }],
      },
    };
    const r = await kubectl(["-n", ns, "apply", "-f", "-"], { input: stringify(body) });
    expect(r.code, r.stderr).toBe(0);
  }

  async function appReady(name: string) {
    const r = await kubectl(["get", "clustergithubapp", name, "-o", "json"]);
    const status = (
      JSON.parse(r.stdout || "{}") as {
        status?: {
          signer?: string;
          conditions?: { type: string; reason: string; status: string; message: string }[];
        };
      }
    ).status;
    return { signer: status?.signer, ready: status?.conditions?.find((c) => c.type === "Ready") };
  }

  /** The token is Ready, live at the simulator for acme/app with exactly contents:read. */
  async function expectLive(
    ns: string,
    name: string,
    permissions: Record<string, string> = { contents: "read" },
  ) {
    // Issued for the current generation (a spec change leaves the old Issued until it is done).
    await expect
      .poll(
        async () => {
          const t = await fx.kube.getToken(ns, name);
          const current = t?.status?.observedGeneration === t?.metadata?.generation;
          return current ? ready(t)?.reason : "older generation";
        },
        { timeout: 60_000 },
      )
      .toBe("Issued");
    const value = await fx.kube.secretValue(ns, `${name}-token`);
    const check = fx.github.sim.checkToken(value ?? "", `${owner}/app`);
    expect(check.live).toBe(true);
    expect(check.scope?.permissions).toEqual(permissions);
    expect(fx.github.sim.checkToken(value ?? "", `${owner}/docs`).live).toBe(false);
    return value;
  }

  it("AWS KMS (local-kms): a token is minted with the key in KMS, by alias through the endpoint", async () => {
    const ns = await newNamespace("keyless-aws");
    fx.github.sim.state.addAppPublicKey(appId, awsKey.publicKeyPem);
    await clusterApp(
      "keyless-aws",
      { awsKms: { keyId: kms.alias, region: kms.region, endpoint: `http://127.0.0.1:${kmsProxy.port}` } },
      ns,
    );
    await token(ns, "ci", "keyless-aws");
    await expectLive(ns, "ci");
    await expect
      .poll(async () => (await appReady("keyless-aws")).ready?.reason, { timeout: 30_000 })
      .toBe("Verified");
    expect((await appReady("keyless-aws")).signer).toBe("awsKms");
  });

  it("AWS KMS down: the token stays in its Secret, the condition says SignerUnavailable, and it recovers", async () => {
    const ns = await newNamespace("keyless-aws-down");
    await clusterApp(
      "keyless-aws-down",
      { awsKms: { keyId: kms.keyArn, endpoint: `http://127.0.0.1:${kmsProxy.port}` } },
      ns,
    );
    await token(ns, "ci", "keyless-aws-down");
    const first = await expectLive(ns, "ci");
    kmsProxy.cut();
    try {
      // A spec change needs a new token, which needs a signature.
      await token(ns, "ci", "keyless-aws-down", { contents: "read", issues: "write" });
      await expect
        .poll(async () => ready(await fx.kube.getToken(ns, "ci"))?.reason, { timeout: 60_000 })
        .toBe("SignerUnavailable");
      expect(ready(await fx.kube.getToken(ns, "ci"))?.message).toMatch(/KMS/);
      expect(await fx.kube.secretValue(ns, "ci-token")).toBe(first);
      expect(fx.github.sim.checkToken(first ?? "", `${owner}/app`).live).toBe(true);
    } finally {
      kmsProxy.restore();
    }
    await expectLive(ns, "ci", { contents: "read", issues: "write" });
  });

  it("PKCS#11 (SoftHSM): a token is minted with the key in the HSM; the PIN comes from a Secret", async () => {
    const ns = await newNamespace("keyless-hsm");
    fx.github.sim.state.addAppPublicKey(appId, pkcs11Key.publicKeyPem);
    await fx.kube.core.createNamespacedSecret({
      namespace: fx.opNs,
      body: { metadata: { name: "hsm-pin" }, stringData: { pin: hsmToken.pin } },
    });
    await clusterApp(
      "keyless-hsm",
      {
        pkcs11: {
          module: softHsmModule,
          tokenLabel: hsmToken.tokenLabel,
          keyLabel: hsmToken.keyLabel,
          pinSecretRef: { name: "hsm-pin" },
        },
      },
      ns,
    );
    await token(ns, "ci", "keyless-hsm");
    await expectLive(ns, "ci");
    await expect
      .poll(async () => (await appReady("keyless-hsm")).ready?.reason, { timeout: 30_000 })
      .toBe("Verified");
  });

  it("PKCS#11: a module the operator was not started with is refused before it is loaded", async () => {
    const ns = await newNamespace("keyless-hsm-module");
    await clusterApp(
      "keyless-hsm-module",
      {
        pkcs11: {
          module: "/usr/lib/x86_64-linux-gnu/libc.so.6",
          slot: 0,
          keyLabel: "k",
          pinSecretRef: { name: "hsm-pin" },
        },
      },
      ns,
    );
    await expect
      .poll(async () => (await appReady("keyless-hsm-module")).ready?.reason, { timeout: 30_000 })
      .toBe("SignerDenied");
    expect((await appReady("keyless-hsm-module")).ready?.message).toContain("--pkcs11-module");
  });

  it("Cloud KMS: a token is minted with a named key version; a new version is a spec change", async () => {
    const ns = await newNamespace("keyless-gcp");
    const key = "projects/ghat/locations/global/keyRings/ci/cryptoKeys/github-app";
    const v1 = gcp.addVersion(key);
    fx.github.sim.state.addAppPublicKey(appId, pem(gcp.publicKeyOf(v1)));
    await clusterApp("keyless-gcp", { gcpKms: { keyVersion: v1, endpoint: gcp.url } }, ns);
    await token(ns, "ci", "keyless-gcp");
    const first = await expectLive(ns, "ci");
    // Rotation: GitHub gets the new public key, the old one is deleted, the App names v2.
    const v2 = gcp.addVersion(key);
    fx.github.sim.state.replaceAppPublicKeys(appId, [
      ...(fx.github.sim.state.apps.get(appId)?.publicKeys ?? []).filter(
        (k) => !samePublicKey(k, gcp.publicKeyOf(v1)),
      ),
      pem(gcp.publicKeyOf(v2)),
    ]);
    await clusterApp("keyless-gcp", { gcpKms: { keyVersion: v2, endpoint: gcp.url } }, ns);
    await token(ns, "ci", "keyless-gcp", { contents: "read", issues: "write" });
    const second = await expectLive(ns, "ci", { contents: "read", issues: "write" });
    expect(second).not.toBe(first);
    expect(gcp.requests.some((r) => r.path.includes(`${v2}:asymmetricSign`))).toBe(true);
  });

  it("Azure Key Vault: a token is minted through workload identity; a key rotation is picked up without a spec change", async () => {
    const ns = await newNamespace("keyless-azure");
    const v1 = azure.addVersion("github-app");
    fx.github.sim.state.addAppPublicKey(appId, pem(azure.publicKeyOf("github-app", v1)));
    await clusterApp("keyless-azure", { azureKeyVault: { vaultUrl: azure.url, keyName: "github-app" } }, ns);
    await token(ns, "ci", "keyless-azure");
    const first = await expectLive(ns, "ci");
    const v2 = azure.addVersion("github-app");
    fx.github.sim.state.replaceAppPublicKeys(appId, [
      ...(fx.github.sim.state.apps.get(appId)?.publicKeys ?? []).filter(
        (k) => !samePublicKey(k, azure.publicKeyOf("github-app", v1)),
      ),
      pem(azure.publicKeyOf("github-app", v2)),
    ]);
    await token(ns, "ci", "keyless-azure", { contents: "read", issues: "write" });
    const second = await expectLive(ns, "ci", { contents: "read", issues: "write" });
    expect(second).not.toBe(first);
    expect(azure.requests.some((r) => r.path.includes(`/keys/github-app/${v2}/sign`))).toBe(true);
  });

  it("Vault transit (contract server): a tenant's GitHubApp signs with its own Vault token; a new key version is picked up; Vault down and back", async () => {
    const ns = await fx.withApp("keyless-vault");
    fx.github.sim.state.addAppPublicKey(appId, vaultKey.publicKeyPem);
    await fx.kube.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "vault-token" }, stringData: { token: vault.rootToken } },
    });
    // A namespaced GitHubApp: Vault with the tenant's own token needs no operator identity.
    await fx.kube.createApp(ns, "vault-app", {
      appId,
      baseUrl: fx.github.sim.url,
      signer: {
        vaultTransit: {
          address: vault.address,
          keyName: "github-app",
          auth: { tokenSecretRef: { name: "vault-token" } },
        },
      },
    });
    const tokenOf = (permissions: Record<string, string>) =>
      stringify({
        apiVersion: `${group}/${version}`,
        kind: "GitHubAppToken",
        metadata: { name: "ci" },
        spec: {
          appRef: { name: "vault-app" },
          installation: { owner },
          repositories: ["app"],
          permissions,
          secrets: [{ name: "ci-token" }],
        },
      });
    const apply = async (permissions: Record<string, string>) => {
      const r = await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenOf(permissions) });
      expect(r.code, r.stderr).toBe(0);
    };
    await apply({ contents: "read" });
    const first = await expectLive(ns, "ci");
    // Rotation in Vault: a new version of the key; GitHub knows only the new public key.
    const next = generateAppKeyPair();
    await importRsaKeyVersion(vault, "github-app", next.privateKeyPkcs1Pem);
    fx.github.sim.state.replaceAppPublicKeys(appId, [
      ...(fx.github.sim.state.apps.get(appId)?.publicKeys ?? []).filter((k) => k !== vaultKey.publicKeyPem),
      next.publicKeyPem,
    ]);
    await apply({ contents: "read", issues: "write" });
    const second = await expectLive(ns, "ci", { contents: "read", issues: "write" });
    expect(second).not.toBe(first);
    // Vault down: the token stays, the condition says SignerUnavailable; back: a new token.
    await vault.stop();
    try {
      // A scope not minted before: the shared-mint cache cannot answer it, only Vault can.
      await apply({ contents: "read", issues: "read" });
      await expect
        .poll(async () => ready(await fx.kube.getToken(ns, "ci"))?.reason, { timeout: 60_000 })
        .toBe("SignerUnavailable");
      expect(await fx.kube.secretValue(ns, "ci-token")).toBe(second);
    } finally {
      await vault.restart();
      await enableTransit(vault);
      await importRsaKey(vault, "github-app", next.privateKeyPkcs1Pem);
    }
    await expectLive(ns, "ci", { contents: "read", issues: "read" });
  });

  it("no PIN, credential or access token reaches logs, events or status", async () => {
    await fx.expectNoLeaks();
    const text = fx.op.logs.join("\n");
    for (const secret of [
      hsmToken.pin,
      gcp.token,
      azure.token,
      azure.federatedToken,
      "ghat-e2e-secret",
      vault.rootToken,
    ]) {
      expect(text.includes(secret)).toBe(false);
    }
    const events = await kubectl(["get", "events", "-A", "-o", "json"]);
    const statuses = await kubectl(["get", "ghat-all", "-A", "-o", "json"]);
    for (const secret of [hsmToken.pin, gcp.token, azure.token, azure.federatedToken, vault.rootToken]) {
      expect(events.stdout.includes(secret)).toBe(false);
      expect(statuses.stdout.includes(secret)).toBe(false);
    }
  });
});

function samePublicKey(pemText: string, key: KeyObject): boolean {
  return createPublicKey(pemText)
    .export({ type: "spki", format: "der" })
    .equals(key.export({ type: "spki", format: "der" }));
}

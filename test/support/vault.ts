import {
  constants,
  createCipheriv,
  createPrivateKey,
  createPublicKey,
  publicEncrypt,
  randomBytes,
} from "node:crypto";
import { readFileSync } from "node:fs";
import { kubeConfig } from "./cluster.ts";
import { type ContractVault, startContractVault } from "./vault-server.ts";

/**
 * The Vault the tests talk to is a contract server written from Vault's HTTP API reference
 * (test/support/vault-server.ts), not Vault: no Vault release builds from the Go module proxy
 * (v1.21.4 and v1.21.2 need an unpublished vault/sdk; v1.20.4's plugin catalog needs a field no
 * published sdk has), and OpenBao v2.x answers 403 where these tests need Vault's answers.
 */
export interface VaultServer {
  /** http://127.0.0.1:PORT */
  address: string;
  rootToken: string;
  /** What the server did so far (time, method, path, status per request), for failure messages. */
  output(): string;
  /** Closes the listener: requests fail to connect. Nothing is dropped until restart(). */
  stop(): Promise<void>;
  /**
   * Listens again on the same address with the same root token and none of the old state
   * (mounts, keys, policies, roles, tokens), as a restarted `vault server -dev` would.
   */
  restart(): Promise<void>;
  /** Stops the server for good. */
  close(): Promise<void>;
  /** Root-token API call; throws with Vault's errors on a non-2xx answer. */
  api(method: string, path: string, body?: unknown, token?: string): Promise<Record<string, unknown>>;
  /** The contract server itself, for fault hooks (failNext). */
  server: ContractVault;
}

/** Starts the contract Vault on a random port of 127.0.0.1, unsealed, with a fresh root token. */
export async function startVault(): Promise<VaultServer> {
  const server = await startContractVault();
  const { address, rootToken } = server;
  const api = (method: string, path: string, body?: unknown, token = rootToken) =>
    vaultApi(address, token, method, path, body);
  return {
    address,
    rootToken,
    output: () => server.log.join("\n"),
    api,
    server,
    stop: () => server.stop(),
    restart: () => server.restart(),
    close: () => server.close(),
  };
}

async function vaultApi(
  address: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const res = await fetch(`${address}/v1/${path}`, {
    method,
    headers: {
      "x-vault-token": token,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (res.status >= 300)
    throw new Error(`vault ${method} ${path} answered ${res.status}: ${text.slice(0, 500)}`);
  return text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
}

/** Mounts the transit secrets engine at `mount` (default transit). */
export async function enableTransit(vault: VaultServer, mount = "transit"): Promise<void> {
  await vault.api("POST", `sys/mounts/${mount}`, { type: "transit" });
}

/**
 * Vault's BYOK envelope for `key` (any PEM form): a fresh AES-256 key wrapped with transit's
 * RSA-4096 wrapping key (RSA-OAEP, SHA-256), followed by the key's PKCS#8 DER wrapped with
 * that AES key (AES-KWP, RFC 5649, whose default IV is A65959A6), all in base64.
 * @see https://developer.hashicorp.com/vault/docs/secrets/transit#bring-your-own-key-byok
 */
async function wrapForImport(vault: VaultServer, pemPrivateKey: string, mount: string): Promise<string> {
  const answer = await vault.api("GET", `${mount}/wrapping_key`);
  const wrappingPem = (answer.data as { public_key: string }).public_key;
  const aesKey = randomBytes(32);
  const wrappedAes = publicEncrypt(
    { key: createPublicKey(wrappingPem), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
    aesKey,
  );
  const der = createPrivateKey(pemPrivateKey).export({ type: "pkcs8", format: "der" });
  const kwp = createCipheriv("id-aes256-wrap-pad", aesKey, Buffer.from("A65959A6", "hex"));
  const wrappedKey = Buffer.concat([kwp.update(der), kwp.final()]);
  return Buffer.concat([wrappedAes, wrappedKey]).toString("base64");
}

/** Imports an RSA-2048 private key as transit key `name` (version 1). */
export async function importRsaKey(
  vault: VaultServer,
  name: string,
  pemPrivateKey: string,
  mount = "transit",
): Promise<void> {
  const ciphertext = await wrapForImport(vault, pemPrivateKey, mount);
  await vault.api("POST", `${mount}/keys/${name}/import`, {
    ciphertext,
    type: "rsa-2048",
    hash_function: "SHA256",
  });
}

/** Imports another RSA-2048 private key as the next version of the imported transit key `name`. */
export async function importRsaKeyVersion(
  vault: VaultServer,
  name: string,
  pemPrivateKey: string,
  mount = "transit",
): Promise<void> {
  const ciphertext = await wrapForImport(vault, pemPrivateKey, mount);
  await vault.api("POST", `${mount}/keys/${name}/import_version`, { ciphertext, hash_function: "SHA256" });
}

export interface KubernetesAuthOptions {
  /** API server URL as Vault must reach it; the kubeconfig's by default. */
  kubernetesHost?: string;
  /** PEM CA of the API server; the kubeconfig's by default. */
  caCertPem?: string;
  /** JWT Vault sends TokenReviews with; unset: the logging-in client's own JWT. */
  reviewerJwt?: string;
  role: string;
  serviceAccount: string;
  namespace: string;
  /** Name of the policy created for the role; it may only sign with and read `key`. */
  policy: string;
  key: string;
  mount?: string;
  transitMount?: string;
}

/**
 * Enables Kubernetes auth (once per mount) against the shared control plane, writes a policy
 * that may only `update` transit/sign/<key> and `read` transit/keys/<key>, and a role bound to
 * one ServiceAccount with that policy.
 */
export async function configureKubernetesAuth(vault: VaultServer, o: KubernetesAuthOptions): Promise<void> {
  const mount = o.mount ?? "kubernetes";
  const transit = o.transitMount ?? "transit";
  const mounts = (await vault.api("GET", "sys/auth")).data as Record<string, unknown> | undefined;
  if (!mounts?.[`${mount}/`]) await vault.api("POST", `sys/auth/${mount}`, { type: "kubernetes" });
  const cluster = clusterOfKubeconfig();
  await vault.api("POST", `auth/${mount}/config`, {
    kubernetes_host: o.kubernetesHost ?? cluster.server,
    kubernetes_ca_cert: o.caCertPem ?? cluster.caPem,
    disable_local_ca_jwt: true,
    ...(o.reviewerJwt === undefined ? {} : { token_reviewer_jwt: o.reviewerJwt }),
  });
  await vault.api("PUT", `sys/policies/acl/${o.policy}`, {
    policy: [
      `path "${transit}/sign/${o.key}" { capabilities = ["update"] }`,
      `path "${transit}/keys/${o.key}" { capabilities = ["read"] }`,
    ].join("\n"),
  });
  await vault.api("POST", `auth/${mount}/role/${o.role}`, {
    bound_service_account_names: [o.serviceAccount],
    bound_service_account_namespaces: [o.namespace],
    token_policies: [o.policy],
    token_ttl: "10m",
  });
}

/** API server URL and CA (PEM) of the shared control plane's kubeconfig. */
export function clusterOfKubeconfig(): { server: string; caPem: string } {
  const cluster = kubeConfig().getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const caPem = cluster.caData
    ? Buffer.from(cluster.caData, "base64").toString("utf8")
    : cluster.caFile
      ? readFileSync(cluster.caFile, "utf8")
      : "";
  return { server: cluster.server, caPem };
}

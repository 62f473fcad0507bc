import type { KeyObject } from "node:crypto";
import type { Clock } from "../clock.ts";

/**
 * Something that signs an App's JWT without ghat holding the key: a Vault/OpenBao transit
 * key, a cloud KMS key, an HSM key through PKCS#11 — or, for `privateKeySecretRef`, a local
 * KeyObject (src/signer/local.ts). The JWT code calls `sign` with the JWT's signing input
 * (`base64url(header).base64url(payload)` as ASCII bytes); the backend answers the RS256
 * signature (RSASSA-PKCS1-v1_5 with SHA-256), raw bytes, as long as the key's modulus.
 *
 * Failures are GhatErrors with codes `SignerUnavailable` (retryable: network, 5xx, throttling,
 * timeouts), `SignerDenied` (credentials refused or the key may not sign) or
 * `SignerKeyNotFound` (no such key or version, or not an RSA signing key). Messages never
 * contain a credential, a PIN, a token or key material, and quote a remote answer only
 * through `quoteRemote` (one line, bounded, redacted).
 */
export interface AppSigner {
  /**
   * What identifies the key: backend, key reference and version (or the public key's
   * fingerprint). Caches of signed JWTs are keyed by it, so a rotated key is a new id.
   */
  readonly id: string;
  /** Which backend, for metrics and messages: "privateKey", "vaultTransit", "awsKms", … */
  readonly kind: SignerKindName;
  /** RS256 signature of `input`. Bounded by the context's timeout. */
  sign(input: Uint8Array): Promise<Uint8Array>;
  /**
   * The public key, where the backend exposes it (KMS GetPublicKey, transit's exported public
   * key, the HSM's public object): verified against one signature before first use, so a
   * wrong key is reported before GitHub rejects it. Undefined when the backend cannot say.
   */
  publicKey(): Promise<KeyObject | undefined>;
  /** Releases sessions, connections and timers (PKCS#11 sessions, Vault token renewals). */
  close?(): Promise<void>;
}

export type SignerKindName = "privateKey" | "vaultTransit" | "awsKms" | "gcpKms" | "azureKeyVault" | "pkcs11";

/** What a backend may use from the operator; nothing else (no Kubernetes client). */
export interface SignerContext {
  clock: Clock;
  /** Per-call deadline, ms (the operator's --github-timeout). */
  timeoutMs: number;
  /**
   * Reads one data key of a Secret in the App's key namespace (a Vault token, a PKCS#11 PIN),
   * decoded; undefined when the Secret or key does not exist. Values are never logged.
   */
  readSecret(name: string, key: string): Promise<string | undefined>;
  /**
   * The operator's own ServiceAccount token (projected, rotated by the kubelet), for
   * Vault's Kubernetes auth. Undefined outside a Pod unless --service-account-token-file is set.
   */
  serviceAccountToken(): Promise<string | undefined>;
  /** Environment for SDK credential chains (AWS_*, GOOGLE_*, AZURE_*); defaults to process.env. */
  env?: NodeJS.ProcessEnv;
}

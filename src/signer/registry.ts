import { type KeyObject, verify } from "node:crypto";
import { type SignerKind, type SignerSpec, signerKind } from "../api/signer.ts";
import { GhatError } from "../core/errors.ts";
import { keyFingerprint } from "../github/privatekey.ts";
import type { AppSigner, SignerContext, SignerKindName } from "./types.ts";

/** Backends that sign with the operator's own identity rather than a credential the App names. */
export const ambientSigners: ReadonlySet<SignerKind> = new Set([
  "awsKms",
  "gcpKms",
  "azureKeyVault",
  "pkcs11",
]);

/**
 * True when a signer spec signs with the operator's own identity: a cloud KMS (IRSA, Workload
 * Identity), an HSM the operator's Pod holds, or Vault's Kubernetes auth (the operator's
 * ServiceAccount token). A tenant naming such a key in a namespaced GitHubApp would borrow
 * the platform's identity and sidestep a ClusterGitHubApp's policy.
 */
export function usesOperatorIdentity(spec: SignerSpec): boolean {
  const kind = signerKind(spec);
  if (kind === undefined) return false;
  if (ambientSigners.has(kind)) return true;
  return kind === "vaultTransit" && spec.vaultTransit?.auth.kubernetes !== undefined;
}

export interface SignerRegistryOptions {
  /** PKCS#11 modules the operator may load (`--pkcs11-module`); a tenant-named path never is. */
  pkcs11Modules: readonly string[];
  /** The operator's ServiceAccount token (for Vault's Kubernetes auth). */
  serviceAccountToken: () => Promise<string | undefined>;
  timeoutMs: number;
  clock: SignerContext["clock"];
  /** Reads a Secret data key (decoded) in a namespace; undefined when absent. */
  readSecret: (namespace: string, name: string, key: string) => Promise<string | undefined>;
  /** Observes every signature: backend, outcome (ok or error code) and seconds. */
  observe?: (kind: SignerKindName, result: string, seconds: number) => void;
  /** Builds a backend; defaults to the lazily loaded modules below (tests inject fakes). */
  build?: (kind: SignerKind, spec: SignerSpec, ctx: SignerContext) => Promise<AppSigner>;
}

interface Entry {
  spec: string;
  signer: Promise<AppSigner>;
}

/**
 * One signer per App and signer spec, built on first use and checked once: where the backend
 * exposes the public key, one probe signature is verified against it, so a wrong key or a
 * key of the wrong type is reported on the App before GitHub refuses a JWT. The same object
 * is returned until the spec changes, so the GitHub client's one-minute JWT cache (keyed by
 * this object) keeps a signer to about one call a minute per App.
 */
export class SignerRegistry {
  readonly #o: SignerRegistryOptions;
  readonly #entries = new Map<string, Entry>();

  constructor(options: SignerRegistryOptions) {
    this.#o = options;
  }

  /** The signer of an App (`kind/namespace/name`), whose secrets live in `keyNamespace`. */
  async get(appKey: string, spec: SignerSpec, keyNamespace: string): Promise<AppSigner> {
    const specKey = JSON.stringify(spec);
    const existing = this.#entries.get(appKey);
    if (existing && existing.spec === specKey) return existing.signer;
    if (existing) this.#retire(existing);
    const kind = signerKind(spec);
    if (kind === undefined) {
      throw new GhatError(
        "InvalidSpec",
        "signer must set exactly one of vaultTransit, awsKms, gcpKms, azureKeyVault or pkcs11",
      );
    }
    const ctx: SignerContext = {
      clock: this.#o.clock,
      timeoutMs: this.#o.timeoutMs,
      readSecret: (name, key) => this.#o.readSecret(keyNamespace, name, key),
      serviceAccountToken: this.#o.serviceAccountToken,
    };
    const signer = this.#build(kind, spec, ctx).then((s) => verified(instrumented(s, this.#o.observe)));
    const entry = { spec: specKey, signer };
    this.#entries.set(appKey, entry);
    // A failed build (bad credentials, no such key) is tried again on the next use, not cached.
    signer.catch(() => {
      if (this.#entries.get(appKey) === entry) this.#entries.delete(appKey);
    });
    return signer;
  }

  /** Forgets an App's signer (the App was deleted or went back to a key Secret). */
  forget(appKey: string): void {
    const entry = this.#entries.get(appKey);
    if (!entry) return;
    this.#entries.delete(appKey);
    this.#retire(entry);
  }

  async close(): Promise<void> {
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.all(entries.map((e) => e.signer.then((s) => s.close?.()).catch(() => undefined)));
  }

  #retire(entry: Entry): void {
    void entry.signer.then((s) => s.close?.()).catch(() => undefined);
  }

  async #build(kind: SignerKind, spec: SignerSpec, ctx: SignerContext): Promise<AppSigner> {
    if (this.#o.build) return this.#o.build(kind, spec, ctx);
    // Each backend (and its SDK) is imported only when an App uses it.
    switch (kind) {
      case "vaultTransit": {
        const { createVaultTransitSigner } = await import("./vault.ts");
        return createVaultTransitSigner(need(spec.vaultTransit), ctx);
      }
      case "awsKms": {
        const { createAwsKmsSigner } = await import("./awskms.ts");
        return createAwsKmsSigner(need(spec.awsKms), ctx);
      }
      case "gcpKms": {
        const { createGcpKmsSigner } = await import("./gcpkms.ts");
        return createGcpKmsSigner(need(spec.gcpKms), ctx);
      }
      case "azureKeyVault": {
        const { createAzureKeyVaultSigner } = await import("./azurekv.ts");
        return createAzureKeyVaultSigner(need(spec.azureKeyVault), ctx);
      }
      case "pkcs11": {
        const { createPkcs11Signer } = await import("./pkcs11.ts");
        return createPkcs11Signer(need(spec.pkcs11), ctx, { allowedModules: this.#o.pkcs11Modules });
      }
    }
  }
}

function need<T>(value: T | undefined): T {
  if (value === undefined) throw new GhatError("InvalidSpec", "the signer's settings are missing");
  return value;
}

/** Times and counts every signature by backend and outcome. */
function instrumented(signer: AppSigner, observe: SignerRegistryOptions["observe"]): AppSigner {
  if (!observe) return signer;
  return {
    id: signer.id,
    kind: signer.kind,
    publicKey: () => signer.publicKey(),
    ...(signer.close ? { close: () => signer.close?.() ?? Promise.resolve() } : {}),
    async sign(input) {
      const started = performance.now();
      try {
        const out = await signer.sign(input);
        observe(signer.kind, "ok", (performance.now() - started) / 1000);
        return out;
      } catch (err) {
        observe(
          signer.kind,
          err instanceof GhatError ? err.code : "InternalError",
          (performance.now() - started) / 1000,
        );
        throw err;
      }
    },
  };
}

/**
 * Checks a new signer once: where the backend tells its public key, a probe signature must
 * verify under it as RS256 with a modulus of at least 2048 bits (what GitHub accepts).
 */
async function verified(signer: AppSigner): Promise<AppSigner> {
  const publicKey = await signer.publicKey();
  if (publicKey === undefined) return signer;
  checkRsaPublicKey(publicKey, signer.kind);
  const probe = new TextEncoder().encode(`ghat signer check ${signer.id}`);
  const signature = await signer.sign(probe);
  if (!verify("sha256", probe, publicKey, signature)) {
    throw new GhatError(
      "SignerKeyNotFound",
      `${signer.kind}: a test signature does not verify with the key's public key (fingerprint ${keyFingerprint(publicKey)}); the key is not an RSA PKCS#1 v1.5 SHA-256 signing key`,
    );
  }
  return signer;
}

function checkRsaPublicKey(key: KeyObject, kind: string): void {
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType !== "rsa" || bits < 2048) {
    throw new GhatError(
      "SignerKeyNotFound",
      `${kind}: the key is ${key.asymmetricKeyType ?? "unknown"}${bits ? ` (${bits} bits)` : ""}; GitHub Apps sign with RSA keys of at least 2048 bits`,
    );
  }
}

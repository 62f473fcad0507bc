import { z } from "zod";
import { dnsSubdomain, webUrl } from "./meta.ts";

/**
 * Keyless signing: where the App's private key lives when it is not in a Secret. ghat only
 * ever asks the backend for an RS256 signature (RSASSA-PKCS1-v1_5 with SHA-256) of the JWT's
 * signing input; the key never enters the operator.
 */

const secretKeyRef = (what: string, defaultKey: string) =>
  z
    .object({
      name: dnsSubdomain(`${what}.name`).describe("Name of the Secret (in the App's key namespace)."),
      key: z
        .string()
        .min(1)
        .max(253)
        .regex(/^[-._a-zA-Z0-9]+$/, "a Secret data key")
        .default(defaultKey)
        .describe(`Key in the Secret's data (default ${defaultKey}).`),
    })
    .describe(`A Secret holding the ${what}, in the App's key namespace.`);

const caBundle = z
  .string()
  .max(65536)
  .optional()
  .describe("PEM CA certificates trusted for the endpoint, in addition to the system roots.");

const pathSegment = (what: string, max = 128) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[A-Za-z0-9][-_.A-Za-z0-9]*$/, `${what}: letters, digits, "-", "_" and "." only`);

export const vaultTransitSigner = z
  .object({
    address: webUrl("http(s)").describe("Vault or OpenBao address, e.g. https://vault.example:8200."),
    mount: z
      .string()
      .min(1)
      .max(256)
      .regex(/^[A-Za-z0-9][-_.A-Za-z0-9]*(\/[A-Za-z0-9][-_.A-Za-z0-9]*)*$/, "a mount path such as transit")
      .default("transit")
      .describe("Path of the transit secrets engine (default transit)."),
    keyName: pathSegment("keyName").describe("Name of the transit key holding the App's RSA key."),
    keyVersion: z
      .number()
      .int()
      .positive()
      .optional()
      .describe("Key version to sign with; unset: the key's latest version."),
    namespace: z
      .string()
      .min(1)
      .max(256)
      .regex(/^[A-Za-z0-9][-_.A-Za-z0-9/]*$/, "a Vault namespace such as team-a/ci")
      .optional()
      .describe("Vault Enterprise / OpenBao namespace (X-Vault-Namespace)."),
    caBundle,
    auth: z
      .object({
        kubernetes: z
          .object({
            role: pathSegment("role").describe("Vault role bound to the operator's ServiceAccount."),
            mount: z
              .string()
              .min(1)
              .max(256)
              .regex(/^[A-Za-z0-9][-_.A-Za-z0-9]*(\/[A-Za-z0-9][-_.A-Za-z0-9]*)*$/, "a mount path")
              .default("kubernetes")
              .describe("Path of the Kubernetes auth method (default kubernetes)."),
          })
          .optional()
          .describe("Log in with the operator's projected ServiceAccount token (Vault's Kubernetes auth)."),
        tokenSecretRef: secretKeyRef("Vault token", "token").optional(),
      })
      .describe("How ghat logs in to Vault: exactly one of kubernetes or tokenSecretRef.")
      .meta({
        "x-kubernetes-validations": [
          {
            rule: "(has(self.kubernetes) ? 1 : 0) + (has(self.tokenSecretRef) ? 1 : 0) == 1",
            message: "set exactly one of auth.kubernetes or auth.tokenSecretRef",
          },
        ],
      }),
  })
  .describe("Sign with a Vault or OpenBao transit key (POST {mount}/sign/{keyName}).");
export type VaultTransitSigner = z.infer<typeof vaultTransitSigner>;

export const awsKmsSigner = z
  .object({
    keyId: z
      .string()
      .min(1)
      .max(2048)
      .regex(/^[A-Za-z0-9:/_+=,.@-]+$/, "a KMS key id, ARN or alias")
      .describe("KMS key id, key ARN, alias name or alias ARN of an RSA_2048+ SIGN_VERIFY key."),
    region: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[a-z0-9-]+$/, "an AWS region such as eu-west-1")
      .optional()
      .describe("AWS region; unset: from the key ARN or the standard AWS configuration."),
    endpoint: webUrl("http(s)")
      .optional()
      .describe("KMS endpoint override (VPC endpoints, FIPS endpoints, local KMS for tests)."),
  })
  .describe(
    "Sign with AWS KMS (RSASSA_PKCS1_V1_5_SHA_256); credentials from the standard AWS chain (IRSA, Pod Identity).",
  );
export type AwsKmsSigner = z.infer<typeof awsKmsSigner>;

export const gcpKmsSigner = z
  .object({
    keyVersion: z
      .string()
      .min(1)
      .max(512)
      .regex(
        /^projects\/[^/\s]+\/locations\/[^/\s]+\/keyRings\/[^/\s]+\/cryptoKeys\/[^/\s]+\/cryptoKeyVersions\/[^/\s]+$/,
        "projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V",
      )
      .describe("Full resource name of an RSA_SIGN_PKCS1_*_SHA256 crypto key version."),
    endpoint: webUrl("http(s)")
      .optional()
      .describe("Cloud KMS API endpoint override (Private Service Connect, tests)."),
  })
  .describe(
    "Sign with Google Cloud KMS; credentials from Workload Identity / application default credentials.",
  );
export type GcpKmsSigner = z.infer<typeof gcpKmsSigner>;

export const azureKeyVaultSigner = z
  .object({
    vaultUrl: webUrl("https").describe("Key Vault URL, e.g. https://my-vault.vault.azure.net."),
    keyName: z
      .string()
      .min(1)
      .max(127)
      .regex(/^[A-Za-z0-9-]+$/, "a Key Vault key name (letters, digits, -)")
      .describe("Name of the RSA key."),
    keyVersion: z
      .string()
      .max(64)
      .regex(/^[A-Za-z0-9]*$/, "a Key Vault key version")
      .optional()
      .describe("Key version; unset: the current version."),
  })
  .describe("Sign with Azure Key Vault (RS256); credentials from Azure workload identity.");
export type AzureKeyVaultSigner = z.infer<typeof azureKeyVaultSigner>;

export const pkcs11Signer = z
  .object({
    module: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^\/[-_./A-Za-z0-9+]*\.so(\.[0-9]+)*$/, "an absolute path to a PKCS#11 module (.so)")
      .describe(
        "Absolute path of the PKCS#11 module in the operator's image, e.g. /usr/lib/softhsm/libsofthsm2.so.",
      ),
    tokenLabel: z.string().min(1).max(32).optional().describe("Label of the token holding the key."),
    slot: z.number().int().min(0).optional().describe("Slot id of the token, instead of tokenLabel."),
    keyLabel: z.string().min(1).max(256).optional().describe("CKA_LABEL of the private key."),
    keyId: z
      .string()
      .min(1)
      .max(256)
      .regex(/^([0-9a-fA-F]{2})+$/, "hex, e.g. 01a2")
      .optional()
      .describe("CKA_ID of the private key, in hex, instead of (or with) keyLabel."),
    pinSecretRef: secretKeyRef("token user PIN", "pin"),
  })
  .describe(
    "Sign with a key in an HSM through PKCS#11 (CKM_SHA256_RSA_PKCS); the key never leaves the token.",
  )
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "(has(self.tokenLabel) ? 1 : 0) + (has(self.slot) ? 1 : 0) == 1",
        message: "set exactly one of tokenLabel or slot",
      },
      { rule: "has(self.keyLabel) || has(self.keyId)", message: "set keyLabel or keyId" },
    ],
  });
export type Pkcs11Signer = z.infer<typeof pkcs11Signer>;

export const signer = z
  .object({
    vaultTransit: vaultTransitSigner.optional(),
    awsKms: awsKmsSigner.optional(),
    gcpKms: gcpKmsSigner.optional(),
    azureKeyVault: azureKeyVaultSigner.optional(),
    pkcs11: pkcs11Signer.optional(),
  })
  .describe(
    "Where the App's key lives when ghat must never see it: exactly one of vaultTransit, awsKms, gcpKms, azureKeyVault or pkcs11.",
  )
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "(has(self.vaultTransit) ? 1 : 0) + (has(self.awsKms) ? 1 : 0) + (has(self.gcpKms) ? 1 : 0) + (has(self.azureKeyVault) ? 1 : 0) + (has(self.pkcs11) ? 1 : 0) == 1",
        message: "set exactly one of vaultTransit, awsKms, gcpKms, azureKeyVault or pkcs11",
      },
    ],
  });
export type SignerSpec = z.infer<typeof signer>;

/** The backend a signer spec names (the CRD guarantees exactly one). */
export type SignerKind = keyof SignerSpec;
export function signerKind(spec: SignerSpec): SignerKind | undefined {
  const kinds = (Object.keys(spec) as SignerKind[]).filter((k) => spec[k] !== undefined);
  return kinds.length === 1 ? kinds[0] : undefined;
}

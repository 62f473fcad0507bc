import { generateKeyPairSync } from "node:crypto";

export interface AppKeyPair {
  /** As GitHub hands it out: `BEGIN RSA PRIVATE KEY`. */
  privateKeyPkcs1Pem: string;
  privateKeyPkcs8Pem: string;
  /** SPKI PEM, for seeding the simulator. */
  publicKeyPem: string;
}

/** A fresh RSA-2048 App key pair (tests and sandboxes; never committed). */
export function generateAppKeyPair(): AppKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    privateKeyPkcs1Pem: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
    privateKeyPkcs8Pem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { GhatError } from "../core/errors.ts";

/** Smallest RSA key ghat accepts (GitHub issues 2048-bit keys). */
export const minRsaBits = 2048;

const fail = (message: string) => new GhatError("InvalidPrivateKey", message);

/**
 * Reads a GitHub App private key however it was pasted: PKCS#1 (`BEGIN RSA PRIVATE KEY`,
 * what GitHub hands out) or PKCS#8 PEM; that PEM base64-encoded once more; escaped `\n`;
 * CRLF; surrounding quotes or whitespace; or a bare base64 DER body. Anything else is refused
 * with a message saying what was found. No key material ever appears in a message.
 */
export function parsePrivateKey(input: string | Uint8Array): KeyObject {
  let text = (typeof input === "string" ? input : Buffer.from(input).toString("utf8")).trim();
  if (text === "") throw fail("the private key is empty");
  text = text.replace(/^["']|["']$/g, "").trim();
  if (text.includes("\\n")) text = text.replace(/\\r\\n|\\n/g, "\n");
  text = text.replace(/\r\n/g, "\n");

  if (!text.includes("-----BEGIN")) {
    const compact = text.replace(/\s+/g, "");
    if (/^[A-Za-z0-9+/=_-]+$/.test(compact) && compact.length > 64) {
      const decoded = Buffer.from(compact, "base64");
      const asText = decoded.toString("utf8");
      if (asText.includes("-----BEGIN")) return parsePrivateKey(asText);
      return fromDer(decoded);
    }
    if (text.startsWith("ssh-") || text.startsWith("ecdsa-")) {
      throw fail(
        "this is an SSH public key, not a private key; download the App's private key (.pem) from GitHub",
      );
    }
    throw fail("the private key is not PEM (no -----BEGIN line) and not base64");
  }

  const header = text.match(/-----BEGIN ([A-Z0-9 ]+)-----/)?.[1] ?? "";
  switch (header) {
    case "RSA PRIVATE KEY":
    case "PRIVATE KEY":
      break;
    case "OPENSSH PRIVATE KEY":
      throw fail(
        "this is an OpenSSH private key; GitHub App keys are PEM. Download the App's key from GitHub, or convert a copy with `ssh-keygen -p -m PEM -f <file>`",
      );
    case "ENCRYPTED PRIVATE KEY":
      throw fail(
        "the private key is encrypted with a passphrase; store it unencrypted (`openssl pkcs8 -topk8 -nocrypt`)",
      );
    case "EC PRIVATE KEY":
      throw fail("this is an EC key; GitHub App keys are RSA");
    case "PUBLIC KEY":
    case "RSA PUBLIC KEY":
      throw fail("this is a public key; ghat needs the App's private key");
    case "CERTIFICATE":
      throw fail("this is a certificate; ghat needs the App's private key");
    default:
      throw fail(`unsupported PEM block "${header || "unknown"}"; expected RSA PRIVATE KEY or PRIVATE KEY`);
  }
  if (/Proc-Type:\s*4,ENCRYPTED/.test(text)) {
    throw fail("the private key is encrypted with a passphrase; store it unencrypted");
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: normalisePem(text), format: "pem" });
  } catch {
    throw fail(`the ${header} block could not be decoded (truncated or corrupted?)`);
  }
  return checkRsa(key);
}

function fromDer(der: Buffer): KeyObject {
  for (const type of ["pkcs8", "pkcs1"] as const) {
    try {
      return checkRsa(createPrivateKey({ key: der, format: "der", type }));
    } catch (err) {
      if (err instanceof GhatError) throw err;
    }
  }
  throw fail("the private key is base64 but neither a PEM nor a DER RSA key");
}

function checkRsa(key: KeyObject): KeyObject {
  if (key.asymmetricKeyType !== "rsa") {
    throw fail(`this is an ${key.asymmetricKeyType ?? "unknown"} key; GitHub App keys are RSA`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < minRsaBits)
    throw fail(`the RSA key has ${bits} bits; GitHub App keys have at least ${minRsaBits}`);
  return key;
}

/** Re-wraps the base64 body at 64 columns (keys pasted on one line still parse). */
function normalisePem(text: string): string {
  const m = text.match(/(-----BEGIN [A-Z0-9 ]+-----)([\s\S]*?)(-----END [A-Z0-9 ]+-----)/);
  if (!m) return text;
  const body = (m[2] ?? "").replace(/\s+/g, "");
  return `${m[1]}\n${body.match(/.{1,64}/g)?.join("\n") ?? ""}\n${m[3]}\n`;
}

/** SHA-256 of the public key (SPKI DER), first 16 hex characters: tells keys apart, reveals nothing. */
export function keyFingerprint(key: KeyObject): string {
  const der = createPublicKey(key).export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("hex").slice(0, 16);
}

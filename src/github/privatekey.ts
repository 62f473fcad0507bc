import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { GhatError } from "../core/errors.ts";

/** Smallest RSA key ghat accepts (GitHub issues 2048-bit keys). */
export const minRsaBits = 2048;

const fail = (message: string) => new GhatError("InvalidPrivateKey", message);

const download = "download a new private key from the App's settings on GitHub";

/**
 * Reads a GitHub App private key however it was pasted: PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`,
 * what GitHub hands out) or PKCS#8 PEM (`BEGIN PRIVATE KEY`); that PEM base64-encoded once
 * more; escaped `\n`; CRLF; surrounding quotes or whitespace; lines re-wrapped or joined; a
 * bare base64 (or binary) DER body. Anything else is refused with a message saying what was
 * found and what to do. No part of the input ever appears in a message.
 */
export function parsePrivateKey(input: string | Uint8Array): KeyObject {
  if (typeof input !== "string" && input[0] === 0x30 && !looksLikeText(input)) {
    return fromDer(Buffer.from(input), "the private key (binary)");
  }
  const text = clean(typeof input === "string" ? input : Buffer.from(input).toString("utf8"));
  if (text === "") throw fail(`the private key is empty; ${download} and paste the whole .pem file`);
  if (text.includes("-----BEGIN")) return fromPem(text, "the private key");

  const compact = text.replace(/\s+/g, "");
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(compact) && compact.length >= 64) {
    const bytes = Buffer.from(compact, "base64");
    const decoded = clean(bytes.toString("utf8"));
    // One level of base64 only: a PEM wrapped in base64 (as Secrets and Helm values often get).
    if (decoded.includes("-----BEGIN")) return fromPem(decoded, "the private key (base64-decoded)");
    return fromDer(bytes, "the private key (base64)");
  }
  if (/^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-|sk-)/.test(text)) {
    throw fail(`the private key is an SSH public key, not a private key; ${download} (a .pem file)`);
  }
  if (text.startsWith("PuTTY-User-Key-File")) {
    throw fail(`the private key is a PuTTY (.ppk) key; GitHub App keys are PEM; ${download}`);
  }
  throw fail(
    `the private key is neither PEM (no BEGIN line) nor base64; ${download} and paste the whole .pem file`,
  );
}

/**
 * SHA-256 of the public key (SPKI DER), first 16 hex characters: tells keys apart (a rotated
 * key Secret) without keeping the PEM, reveals nothing. Same for a private key and its public half.
 */
export function keyFingerprint(key: KeyObject): string {
  const publicKey = key.type === "public" ? key : createPublicKey(key);
  const der = publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("hex").slice(0, 16);
}

/** Undoes the usual damage: BOM, quotes, escaped newlines (`\n` as two characters), CRLF. */
function clean(raw: string): string {
  let text = raw.replace(/^\uFEFF/, "").trim();
  for (;;) {
    const unquoted = text.replace(/^(["'])([\s\S]*)\1$/, "$2").trim();
    if (unquoted === text) break;
    text = unquoted;
  }
  // Base64 and PEM armour never contain a backslash, so these can only be escaped line breaks.
  return text.replace(/\\r\\n|\\n|\\r/g, "\n").replace(/\r\n?/g, "\n");
}

function looksLikeText(bytes: Uint8Array): boolean {
  return bytes
    .subarray(0, 64)
    .every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b < 0x7f));
}

const privateLabels = new Set([
  "RSA PRIVATE KEY",
  "PRIVATE KEY",
  "ENCRYPTED PRIVATE KEY",
  "OPENSSH PRIVATE KEY",
  "EC PRIVATE KEY",
  "DSA PRIVATE KEY",
]);

function fromPem(text: string, what: string): KeyObject {
  const labels = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)].map((m) => m[1] ?? "");
  // A bundle (certificate + key) is fine as long as it holds one private key.
  const label = labels.find((l) => privateLabels.has(l)) ?? labels[0] ?? "";
  switch (label) {
    case "RSA PRIVATE KEY":
    case "PRIVATE KEY":
      break;
    case "OPENSSH PRIVATE KEY":
      throw fail(
        `${what} is an OpenSSH key; GitHub App keys are PEM (BEGIN RSA PRIVATE KEY). ${capital(download)}, or convert a copy of this one with \`ssh-keygen -p -m PEM -f <file>\``,
      );
    case "ENCRYPTED PRIVATE KEY":
      throw encrypted(what);
    case "EC PRIVATE KEY":
      throw fail(`${what} is an EC key; GitHub App keys are RSA; ${download}`);
    case "DSA PRIVATE KEY":
      throw fail(`${what} is a DSA key; GitHub App keys are RSA; ${download}`);
    case "PUBLIC KEY":
    case "RSA PUBLIC KEY":
      throw fail(`${what} is a public key; ghat needs the App's private key; ${download}`);
    case "CERTIFICATE":
    case "TRUSTED CERTIFICATE":
    case "CERTIFICATE REQUEST":
    case "NEW CERTIFICATE REQUEST":
      throw fail(`${what} is a certificate, not a private key; ${download}`);
    case "PGP PRIVATE KEY BLOCK":
    case "PGP PUBLIC KEY BLOCK":
      throw fail(`${what} is a PGP key; GitHub App keys are PEM RSA keys; ${download}`);
    default:
      throw fail(
        `${what} is a PEM block of an unsupported type${/^[A-Z0-9 ]{1,40}$/.test(label) ? ` (${label})` : ""}; expected RSA PRIVATE KEY or PRIVATE KEY`,
      );
  }
  const block = text.match(new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`))?.[1];
  if (block === undefined) {
    throw fail(
      `${what} has no END line (truncated?); paste the whole .pem file, BEGIN and END lines included`,
    );
  }
  if (/Proc-Type:\s*4,ENCRYPTED/.test(block)) throw encrypted(what);
  const body = block.replace(/\s+/g, "");
  const pem = `-----BEGIN ${label}-----\n${body.match(/.{1,64}/g)?.join("\n") ?? ""}\n-----END ${label}-----\n`;
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch {
    throw fail(
      `${what} looks like a ${label} but could not be decoded (truncated or corrupted?); paste the whole .pem file`,
    );
  }
  return checkKey(key, what);
}

function fromDer(der: Buffer, what: string): KeyObject {
  for (const type of ["pkcs8", "pkcs1"] as const) {
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: der, format: "der", type });
    } catch {
      continue;
    }
    return checkKey(key, what);
  }
  try {
    createPublicKey({ key: der, format: "der", type: "spki" });
    throw fail(`${what} is a public key; ghat needs the App's private key; ${download}`);
  } catch (err) {
    if (err instanceof GhatError) throw err;
  }
  throw fail(
    `${what} is base64 but neither a PEM file nor a DER RSA private key; ${download} and paste the whole .pem file`,
  );
}

function checkKey(key: KeyObject, what: string): KeyObject {
  const type = key.asymmetricKeyType;
  if (type === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < minRsaBits) {
      throw fail(
        `${what} is an RSA key of ${bits} bits; GitHub App keys have at least ${minRsaBits} bits; ${download}`,
      );
    }
    return key;
  }
  const names: Record<string, string> = {
    "rsa-pss": "an RSA-PSS key (GitHub needs plain RSA for RS256)",
    ec: `an EC key${key.asymmetricKeyDetails?.namedCurve ? ` (${key.asymmetricKeyDetails.namedCurve})` : ""}`,
    ed25519: "an Ed25519 key",
    ed448: "an Ed448 key",
    dsa: "a DSA key",
  };
  throw fail(
    `${what} is ${names[type ?? ""] ?? `a ${type ?? "unknown"} key`}; GitHub App keys are RSA; ${download}`,
  );
}

function encrypted(what: string): GhatError {
  return fail(
    `${what} is encrypted with a passphrase; store it unencrypted (\`openssl pkey -in <file> -out <plain.pem>\`) or ${download}`,
  );
}

function capital(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

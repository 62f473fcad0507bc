import { generateKeyPairSync, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { GhatError } from "../../../src/core/errors.ts";
import { keyFingerprint, parsePrivateKey } from "../../../src/github/privatekey.ts";

/** PEM armour built at runtime, so no key-shaped text is committed (bodies are generated or fake). */
const armor = (edge: "BEGIN" | "END", label: string) => `-----${edge} ${label}-----`;
const wrap = (label: string, body: string) =>
  `${armor("BEGIN", label)}\n${body.match(/.{1,64}/g)?.join("\n")}\n${armor("END", label)}\n`;
const b64 = (text: string | Buffer) => Buffer.from(text).toString("base64");

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const pkcs1 = rsa.privateKey.export({ type: "pkcs1", format: "pem" }).toString();
const pkcs8 = rsa.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const pkcs8Der = rsa.privateKey.export({ type: "pkcs8", format: "der" });
const pkcs1Der = rsa.privateKey.export({ type: "pkcs1", format: "der" });
const fingerprint = keyFingerprint(rsa.privateKey);
/** The base64 body of a PEM, on one line. */
const body = (pem: string) =>
  pem
    .split("\n")
    .filter((l) => l && !l.startsWith("-----"))
    .join("");

describe("parsePrivateKey accepts every way a key gets pasted", () => {
  it.each<[string, string | Uint8Array]>([
    ["PKCS#1 PEM (as GitHub hands it out)", pkcs1],
    ["PKCS#8 PEM", pkcs8],
    ["PEM base64-encoded once more (a Secret value pasted encoded)", b64(pkcs1)],
    ["PEM base64-encoded and wrapped at 76 columns", b64(pkcs8).replace(/.{76}/g, "$&\n")],
    ["escaped newlines (an env var or .env file)", pkcs1.replace(/\n/g, "\\n")],
    ["a JSON string: quoted, with escaped newlines", JSON.stringify(pkcs1)],
    ["single quotes", `'${pkcs8}'`],
    ["CRLF line ends", pkcs1.replace(/\n/g, "\r\n")],
    ["surrounding whitespace", `\n\n   ${pkcs8}   \n\n`],
    ["a byte-order mark", `\uFEFF${pkcs1}`],
    ["YAML-indented lines", pkcs1.replace(/\n/g, "\n    ")],
    [
      "the body on one line",
      `${armor("BEGIN", "RSA PRIVATE KEY")}\n${body(pkcs1)}\n${armor("END", "RSA PRIVATE KEY")}`,
    ],
    [
      "armour and body on a single line",
      `${armor("BEGIN", "PRIVATE KEY")}${body(pkcs8)}${armor("END", "PRIVATE KEY")}`,
    ],
    ["a bare base64 PKCS#8 DER body", b64(pkcs8Der)],
    ["a bare base64 PKCS#1 DER body", b64(pkcs1Der)],
    ["binary DER bytes", new Uint8Array(pkcs8Der)],
    ["PEM as bytes (a Secret's data)", new Uint8Array(Buffer.from(pkcs1))],
  ])("%s", (_case, input) => {
    expect(keyFingerprint(parsePrivateKey(input))).toBe(fingerprint);
  });
});

describe("parsePrivateKey refuses what is not a usable App key, saying what it found and what to do", () => {
  const ed = generateKeyPairSync("ed25519");
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const pss = generateKeyPairSync("rsa-pss", { modulusLength: 2048 });
  const small = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const openssh = wrap(
    "OPENSSH PRIVATE KEY",
    b64(Buffer.concat([Buffer.from("openssh-key-v1\0"), randomBytes(300)])),
  );
  const certificate = wrap("CERTIFICATE", b64(randomBytes(400)));
  const opensshMessage = "is an OpenSSH key; GitHub App keys are PEM";

  it.each<[string, string, string]>([
    ["an OpenSSH key", openssh, opensshMessage],
    ["an OpenSSH key, base64-encoded", b64(openssh), opensshMessage],
    ["an OpenSSH key with escaped newlines", openssh.replace(/\n/g, "\\n"), "ssh-keygen -p -m PEM"],
    [
      "an encrypted PKCS#8 key",
      rsa.privateKey
        .export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "pw" })
        .toString(),
      "encrypted with a passphrase",
    ],
    [
      "an encrypted PKCS#1 key (Proc-Type header)",
      rsa.privateKey
        .export({ type: "pkcs1", format: "pem", cipher: "aes-256-cbc", passphrase: "pw" })
        .toString(),
      "encrypted with a passphrase",
    ],
    ["a public key", rsa.publicKey.export({ type: "spki", format: "pem" }).toString(), "is a public key"],
    [
      "a PKCS#1 public key",
      rsa.publicKey.export({ type: "pkcs1", format: "pem" }).toString(),
      "is a public key",
    ],
    [
      "a base64 DER public key",
      b64(rsa.publicKey.export({ type: "spki", format: "der" })),
      "is a public key",
    ],
    ["a certificate", certificate, "is a certificate"],
    ["an EC key (SEC1)", ec.privateKey.export({ type: "sec1", format: "pem" }).toString(), "is an EC key"],
    [
      "an EC key (PKCS#8)",
      ec.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      "EC key (prime256v1)",
    ],
    [
      "an Ed25519 key",
      ed.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      "is an Ed25519 key",
    ],
    ["an RSA-PSS key", pss.privateKey.export({ type: "pkcs8", format: "pem" }).toString(), "RSA-PSS"],
    [
      "a 1024-bit RSA key",
      small.privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
      "RSA key of 1024 bits; GitHub App keys have at least 2048 bits",
    ],
    [
      "an SSH public key line",
      `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${"Q".repeat(40)} someone@host`,
      "SSH public key",
    ],
    ["a PuTTY key", "PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nComment: x", "PuTTY"],
    ["an empty string", "", "is empty"],
    ["only whitespace and quotes", '  ""  ', "is empty"],
    ["garbage", "hello world, this is not a key", "neither PEM (no BEGIN line) nor base64"],
    ["base64 of random bytes", b64(randomBytes(300)), "neither a PEM file nor a DER RSA private key"],
    [
      "a PEM without its END line",
      `${armor("BEGIN", "RSA PRIVATE KEY")}\n${body(pkcs1).slice(0, 300)}`,
      "has no END line (truncated?)",
    ],
    [
      "a truncated PEM body",
      `${armor("BEGIN", "RSA PRIVATE KEY")}\n${body(pkcs1).slice(0, 300)}\n${armor("END", "RSA PRIVATE KEY")}`,
      "could not be decoded",
    ],
    ["an unknown PEM block", wrap("FOO BAR", b64(randomBytes(60))), "unsupported type (FOO BAR)"],
  ])("%s", (_case, input, says) => {
    let err: unknown;
    try {
      parsePrivateKey(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GhatError);
    expect(err).toMatchObject({ code: "InvalidPrivateKey", retryable: false });
    const message = (err as GhatError).message;
    expect(message).toContain(says);
    expectNoKeyMaterial(message, input);
  });

  it("tells the user to download a new key or convert an OpenSSH one", () => {
    expect(() => parsePrivateKey(openssh)).toThrow(/download a new private key.*ssh-keygen -p -m PEM/is);
  });
});

describe("keyFingerprint", () => {
  it("is 16 hex characters, the same for a key however it was pasted", () => {
    expect(fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(keyFingerprint(parsePrivateKey(b64(pkcs8)))).toBe(fingerprint);
    expect(keyFingerprint(rsa.publicKey)).toBe(fingerprint);
  });

  it("changes when the key changes", () => {
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 });
    expect(keyFingerprint(other.privateKey)).not.toBe(fingerprint);
  });

  it("reveals nothing of the key", () => {
    expect(pkcs1).not.toContain(fingerprint);
    expect(body(pkcs8)).not.toContain(fingerprint);
  });
});

/** No 12-character run of the input's base64 appears in the message. */
function expectNoKeyMaterial(message: string, input: string): void {
  for (const run of input.match(/[A-Za-z0-9+/=]{16,}/g) ?? []) {
    for (let i = 0; i + 12 <= run.length; i += 4) {
      expect(message).not.toContain(run.slice(i, i + 12));
    }
  }
}

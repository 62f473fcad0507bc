import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { GhatError } from "../../../src/core/errors.ts";
import { keyFingerprint, parsePrivateKey } from "../../../src/github/privatekey.ts";

/** PEM armour built at runtime, so no key-shaped text is committed (bodies here are fake or generated). */
const armor = (edge: "BEGIN" | "END", type: string) => `-----${edge} ${type} ${"PRIVATE"} KEY-----`;

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const pkcs1 = rsa.privateKey.export({ type: "pkcs1", format: "pem" }).toString();
const pkcs8 = rsa.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const der = rsa.privateKey.export({ type: "pkcs8", format: "der" }).toString("base64");
const fingerprint = keyFingerprint(rsa.privateKey);
const body = (pem: string) => pem.split("\n").slice(1, -2).join("");

describe("parsePrivateKey accepts every way a key gets pasted", () => {
  it.each([
    ["PKCS#1 PEM (as GitHub gives it)", pkcs1],
    ["PKCS#8 PEM", pkcs8],
    ["PEM base64-encoded once more", Buffer.from(pkcs1).toString("base64")],
    ["escaped newlines", pkcs1.replace(/\n/g, "\\n")],
    ["CRLF line ends", pkcs1.replace(/\n/g, "\r\n")],
    ["surrounding quotes and spaces", `  "${pkcs8}"  `],
    [
      "one long line",
      pkcs1.replace(/\n(?!-----END)/g, "").replace(armor("BEGIN", "RSA"), `${armor("BEGIN", "RSA")}\n`),
    ],
    ["bare base64 DER", der],
    ["bytes", Buffer.from(pkcs8)],
  ])("%s", (_case, input) => {
    expect(keyFingerprint(parsePrivateKey(input))).toBe(fingerprint);
  });
});

describe("parsePrivateKey refuses what is not a usable App key, saying what it found", () => {
  const ed = generateKeyPairSync("ed25519");
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const small = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const secretBody = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW";
  it.each([
    [
      "an OpenSSH key",
      `${armor("BEGIN", "OPENSSH")}\n${secretBody}\n${armor("END", "OPENSSH")}\n`,
      "OpenSSH private key",
    ],
    [
      "an encrypted PKCS#8 key",
      rsa.privateKey
        .export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "x" })
        .toString(),
      "encrypted",
    ],
    ["a public key", rsa.publicKey.export({ type: "spki", format: "pem" }).toString(), "public key"],
    ["an EC key", ec.privateKey.export({ type: "sec1", format: "pem" }).toString(), "EC key"],
    ["an Ed25519 key", ed.privateKey.export({ type: "pkcs8", format: "pem" }).toString(), "ed25519 key"],
    ["a 1024-bit RSA key", small.privateKey.export({ type: "pkcs1", format: "pem" }).toString(), "1024 bits"],
    ["an SSH public key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx secret@host", "SSH public key"],
    ["an empty string", "   ", "empty"],
    ["garbage", "hello world", "not PEM"],
    [
      "a truncated PEM",
      `${armor("BEGIN", "RSA")}\n${body(pkcs1).slice(0, 200)}\n${armor("END", "RSA")}\n`,
      "could not be decoded",
    ],
  ])("%s", (_case, input, message) => {
    let err: unknown;
    try {
      parsePrivateKey(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GhatError);
    expect(err).toMatchObject({ code: "InvalidPrivateKey" });
    expect((err as Error).message).toContain(message);
    expect((err as Error).message).not.toContain(secretBody.slice(0, 20));
    expect((err as Error).message).not.toContain(body(pkcs1).slice(10, 40));
  });
});

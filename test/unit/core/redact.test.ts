import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { redact } from "../../../src/core/errors.ts";

describe("redact", () => {
  it.each([
    ["Authorization: token abcdefgh12345", "Authorization: token [REDACTED]"],
    ['{"token":"abcdefghijk"}', '{"token":"[REDACTED]"}'],
    ["token=abcdefgh123", "token=[REDACTED]"],
    ["bearer abcdef12345678", "bearer [REDACTED]"],
    ["token ghs_abcdefghijklmnopqrstuvwxyz012345", "token [REDACTED TOKEN]"],
  ])("hides the secret in %j", (input, want) => {
    expect(redact(input)).toBe(want);
  });

  it("hides a private key PEM (generated here, never committed)", () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
    const pem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
    expect(redact(`key: ${pem}`)).toBe("key: [REDACTED KEY]\n");
  });

  it.each([
    'githubapptokens.ghat.dev "t0" is forbidden',
    "the token superseded earlier is revoked",
    "Secret ci-token holds a token valid until 2026-11-24T13:00:00Z",
  ])("leaves words that merely contain 'token' alone: %j", (input) => {
    expect(redact(input)).toBe(input);
  });
});

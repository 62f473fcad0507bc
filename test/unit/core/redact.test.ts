import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { redact } from "../../../src/core/errors.ts";

/** Key material is generated at test time: nothing key-shaped is committed. */
function pem(kind: "rsa-pkcs1" | "rsa-pkcs8" | "ec"): string {
  if (kind === "ec") {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    return privateKey.export({ type: "sec1", format: "pem" }).toString();
  }
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  return privateKey.export({ type: kind === "rsa-pkcs1" ? "pkcs1" : "pkcs8", format: "pem" }).toString();
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
/** Like `base64` does by default: lines of 76 characters. */
const wrap = (s: string, sep = "\n") => (s.match(/.{1,76}/g) ?? []).join(sep);

/** A token shaped like GitHub's grammar, with "-" and "." inside (built, not committed). */
const tail = "12345_eyJhbGciOiJSUzI1NiJ9-abcdefghijklmnop.qrstuvwxyz-0123456789";

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

  it.each(["ghs_", "gho_", "ghu_", "ghp_", "ghr_", "github_pat_"])(
    "hides a whole %s token, through '-' and '.'",
    (prefix) => {
      const out = redact(`minted ${prefix}${tail} for acme`);
      expect(out).toBe("minted [REDACTED TOKEN] for acme");
    },
  );

  it.each([
    ["in JSON", `{"t":"ghs_${tail}"}`, '{"t":"[REDACTED TOKEN]"}'],
    ["after an underscore", `x_ghs_${tail} y`, "x_[REDACTED TOKEN] y"],
    [
      "a JWT after an underscore",
      "id_eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJl",
      "id_[REDACTED JWT]",
    ],
  ])("hides a token %s", (_what, input, want) => {
    expect(redact(input)).toBe(want);
  });

  it.each(["rsa-pkcs1", "rsa-pkcs8", "ec"] as const)("hides a %s private key PEM", (kind) => {
    expect(redact(`key: ${pem(kind)}`)).toBe("key: [REDACTED KEY]\n");
  });

  it("hides PEM armour in lower case, and a PEM cut off before its END line", () => {
    const key = pem("rsa-pkcs1");
    expect(redact(`key: ${key.toLowerCase()}`)).toBe("key: [REDACTED KEY]\n");
    expect(redact(`key: ${key.slice(0, 200)}`)).toBe("key: [REDACTED KEY]");
    expect(redact(`key: ${key.replace(/\n/g, "\\n")} end`)).toBe("key: [REDACTED KEY]\\n end");
  });

  it.each<[string, (key: string) => string]>([
    ["base64 PEM", (k) => b64(k)],
    ["base64 PEM wrapped over lines", (k) => wrap(b64(k))],
    ["base64 PEM wrapped with escaped newlines", (k) => wrap(b64(k), "\\n")],
    ["base64 of lower-case PEM", (k) => b64(k.toLowerCase())],
    ["base64 PEM cut short", (k) => b64(k).slice(0, 30)],
    ["base64 of text that carries a PEM", (k) => b64(`x${k}`)],
    ["base64 of text that carries a PEM, unaligned", (k) => b64(`xy: ${k}`).slice(2)],
    ["a base64 slice from the middle of a PEM", (k) => b64(k).slice(401, 701)],
  ])("hides %s", (_what, encode) => {
    const key = pem("rsa-pkcs1");
    expect(redact(`data: ${encode(key)} (from Secret)`)).toBe("data: [REDACTED KEY] (from Secret)");
  });

  it.each([
    'githubapptokens.ghat.dev "t0" is forbidden',
    "the token superseded earlier is revoked",
    "Secret ci-token holds a token valid until 2026-11-24T13:00:00Z",
    "POST https://api.github.com/app/installations/12345678/access_tokens: 201",
    "sha256 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
    "fingerprint SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    "the nonexistentsuperlongidentifierwithoutanyseparatorsatallinsideofit is fine",
    `hello ${b64("a harmless sentence that is long enough to be decoded, twice over")}`,
    "uid 0b5e3f1c-9a7d-4c2e-8f6a-1d2b3c4d5e6f ghs_short",
  ])("leaves words that merely look like secrets alone: %j", (input) => {
    expect(redact(input)).toBe(input);
  });
});

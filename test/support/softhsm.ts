import { execFileSync } from "node:child_process";
import { createPrivateKey, randomInt } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Debian's (and Ubuntu's) path of SoftHSM's PKCS#11 module (apt package softhsm2). */
export const softHsmModule = "/usr/lib/softhsm/libsofthsm2.so";

export interface SoftHsmToken {
  /** The PKCS#11 module to load. */
  module: string;
  /** The SOFTHSM2_CONF this token lives under. */
  conf: string;
  tokenLabel: string;
  /** Slot id SoftHSM gave the token (a large number, not 0). */
  slot: number;
  /** The user PIN (a random test PIN; never logged). */
  pin: string;
  keyLabel: string;
  /** CKA_ID of the imported key pair, hex. */
  keyId: string;
}

export interface SoftHsm {
  conf: string;
  /** Initialises a token and imports an RSA key pair into it (private and public objects). */
  addToken(options: {
    tokenLabel: string;
    privateKeyPem: string;
    keyLabel?: string;
    keyId?: string;
  }): SoftHsmToken;
  /** Removes the token directory and the configuration. */
  close(): void;
}

/**
 * A SoftHSM 2 in a temp directory: its own SOFTHSM2_CONF (token directory, file object store),
 * set in process.env so the module, when first initialised in this process, reads it.
 * SoftHSM reads its configuration once, at C_Initialize, and a module is initialised once per
 * process: create the SoftHSM (and its tokens) before the first PKCS#11 signer of the process
 * is used, and use one per test file.
 * `softhsm2-util --import` stores both halves of the key pair, so the public object the
 * signer's publicKey() reads (CKA_MODULUS, CKA_PUBLIC_EXPONENT) is there without pkcs11-tool.
 */
export function createSoftHsm(): SoftHsm {
  if (!existsSync(softHsmModule)) {
    throw new Error(`${softHsmModule} is missing: install the softhsm2 package (apt-get install softhsm2)`);
  }
  const dir = mkdtempSync(join(tmpdir(), "ghat-softhsm-"));
  const tokens = join(dir, "tokens");
  mkdirSync(tokens, { mode: 0o700 });
  const conf = join(dir, "softhsm2.conf");
  writeFileSync(
    conf,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  process.env.SOFTHSM2_CONF = conf;
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  const util = (args: string[]) =>
    execFileSync("softhsm2-util", args, { env, encoding: "utf8", stdio: "pipe" });
  return {
    conf,
    addToken(options) {
      const pin = String(randomInt(10_000_000, 99_999_999));
      const soPin = String(randomInt(10_000_000, 99_999_999));
      const keyLabel = options.keyLabel ?? "ghat-app-key";
      const keyId = options.keyId ?? "01";
      const out = util([
        "--init-token",
        "--free",
        "--label",
        options.tokenLabel,
        "--pin",
        pin,
        "--so-pin",
        soPin,
      ]);
      const slot = Number(/reassigned to slot (\d+)/.exec(out)?.[1]);
      if (!Number.isSafeInteger(slot)) throw new Error(`softhsm2-util --init-token named no slot: ${out}`);
      const keyFile = join(dir, `${options.tokenLabel}.p8`);
      // softhsm2-util --import reads PKCS#8 PEM only.
      writeFileSync(
        keyFile,
        createPrivateKey(options.privateKeyPem).export({ type: "pkcs8", format: "pem" }).toString(),
        { mode: 0o600 },
      );
      try {
        util([
          "--import",
          keyFile,
          "--token",
          options.tokenLabel,
          "--label",
          keyLabel,
          "--id",
          keyId,
          "--pin",
          pin,
        ]);
      } finally {
        rmSync(keyFile, { force: true });
      }
      return { module: softHsmModule, conf, tokenLabel: options.tokenLabel, slot, pin, keyLabel, keyId };
    },
    close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

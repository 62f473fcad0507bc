import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createPrivateKey, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { vi } from "vitest";
import { stringify } from "yaml";

const root = new URL("../../", import.meta.url).pathname;

/** Builds (once; cached under ~/.cache/ghat) and returns the path of the local-kms binary. */
export function localKmsBinary(): string {
  return (
    execFileSync("bash", [`${root}hack/localkms/build.sh`], { encoding: "utf8" })
      .trim()
      .split("\n")
      .at(-1) ?? ""
  );
}

export interface LocalKmsOptions {
  /** The RSA private key (any PEM form) seeded as an RSA SIGN_VERIFY key. */
  privateKeyPem: string;
  /** Key id of the seeded key; a random UUID by default. */
  keyId?: string;
  /** Alias of the seeded key (`alias/…`); alias/ghat-test by default. */
  alias?: string;
  region?: string;
  accountId?: string;
}

export interface LocalKms {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  region: string;
  accountId: string;
  keyId: string;
  keyArn: string;
  alias: string;
  aliasArn: string;
  /** What the server wrote so far (logrus on stderr), for failure messages. */
  output(): string;
  /** Stops the server (SIGTERM) and waits for it to exit; the data directory stays until `close`. */
  stop(): Promise<void>;
  /** Stops the server and removes its data and seed. */
  close(): Promise<void>;
}

/**
 * Starts local-kms (github.com/nsmithuk/local-kms, built by hack/localkms/build.sh) on a port
 * the kernel picks (PORT=0, read back from its log), with a fresh data directory and a seed
 * file that imports the given RSA key as an asymmetric SIGN_VERIFY key under a known key id
 * and alias. local-kms seeds `Keys.Asymmetric.Rsa[].PrivateKeyPem` (PKCS#8, no password), so
 * the key is converted to PKCS#8 first. Ready once it answers ListKeys (polled, never slept on).
 */
export async function startLocalKms(options: LocalKmsOptions): Promise<LocalKms> {
  const binary = localKmsBinary();
  const dir = mkdtempSync(join(tmpdir(), "ghat-localkms-"));
  const region = options.region ?? "eu-west-2";
  const accountId = options.accountId ?? "111122223333";
  const keyId = options.keyId ?? randomUUID();
  const alias = options.alias ?? "alias/ghat-test";
  const pkcs8 = createPrivateKey(options.privateKeyPem).export({ type: "pkcs8", format: "pem" }).toString();
  const seed = {
    Keys: {
      Asymmetric: {
        Rsa: [
          {
            Metadata: { KeyId: keyId, KeyUsage: "SIGN_VERIFY", Description: "ghat test key" },
            PrivateKeyPem: pkcs8,
          },
        ],
      },
    },
    Aliases: [{ AliasName: alias, TargetKeyId: keyId }],
  };
  const seedPath = join(dir, "seed.yaml");
  writeFileSync(seedPath, stringify(seed), { mode: 0o600 });

  let log = "";
  let exited = false;
  const child: ChildProcess = spawn(binary, [], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      PORT: "0",
      KMS_REGION: region,
      KMS_ACCOUNT_ID: accountId,
      KMS_DATA_PATH: join(dir, "data"),
      KMS_SEED_PATH: seedPath,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const collect = (chunk: Buffer) => {
    // logrus forces colours; the escapes are noise in failure messages.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes are what is removed
    log += chunk.toString("utf8").replace(/\x1b\[[0-9;]*m/g, "");
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exit = new Promise<void>((resolve) => {
    child.once("exit", () => {
      exited = true;
      resolve();
    });
  });

  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    await exit;
  };
  const close = async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    // vi.waitFor (not expect.poll): this runs in beforeAll hooks too.
    const port = await vi.waitFor(
      () => {
        if (exited) throw new Error(`local-kms exited while starting:\n${log}`);
        const found = /Local KMS started on [0-9.]*:(\d+)/.exec(log)?.[1];
        if (!found) throw new Error(`local-kms has not said its port yet:\n${log}`);
        return found;
      },
      { timeout: 30_000, interval: 50 },
    );
    const endpoint = `http://127.0.0.1:${port}`;
    await vi.waitFor(
      async () => {
        const status = await listKeys(endpoint);
        if (status !== 200) throw new Error(`local-kms answers ListKeys with ${status || "no connection"}`);
      },
      { timeout: 30_000, interval: 50 },
    );
    if (!log.includes("1 new keys and 1 new aliases added")) {
      throw new Error(`local-kms did not import the seeded key and alias:\n${log}`);
    }
    const arnPrefix = `arn:aws:kms:${region}:${accountId}:`;
    return {
      endpoint,
      region,
      accountId,
      keyId,
      keyArn: `${arnPrefix}key/${keyId}`,
      alias,
      aliasArn: `${arnPrefix}${alias}`,
      output: () => log,
      stop,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Status of an unsigned ListKeys call (local-kms does not check signatures); 0 when refused. */
async function listKeys(endpoint: string): Promise<number> {
  try {
    const res = await fetch(endpoint, {
      method: "POST",
      headers: { "content-type": "application/x-amz-json-1.1", "x-amz-target": "TrentService.ListKeys" },
      body: "{}",
      signal: AbortSignal.timeout(2000),
    });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

import { generateKeyPairSync } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import type { VaultTransitSigner } from "../../src/api/signer.ts";
import { GhatError } from "../../src/core/errors.ts";
import type { Fetch, FetchInit } from "../../src/github/client.ts";
import type { AppSigner, SignerContext } from "../../src/signer/types.ts";
import { createVaultTransitSigner, maxVaultSignatureBytes } from "../../src/signer/vault.ts";
import { FakeClock } from "./fakeclock.ts";

const address = "https://vault.example:8200";
const input = new TextEncoder().encode(
  "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjEsImV4cCI6MiwiaXNzIjoxfQ",
);
const rawSignature = Buffer.alloc(256, 0xab);
const tokenA = "hvs.CAESIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const tokenB = "hvs.CAESIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
const saJwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Z2hhdCJ9.c2lnbmF0dXJl";
const clientToken = "hvs.CAESIKUBEKUBEKUBEKUBEKUBEKUBEKUBEKUBEKUBEKUBEKUB";

/** Every error message a test saw, checked for credentials at the end. */
const messages: string[] = [];
const signers: AppSigner[] = [];

afterAll(async () => {
  await Promise.all(signers.map((s) => s.close?.()));
  expect(messages.length).toBeGreaterThan(10);
  for (const m of messages) {
    for (const secret of [tokenA, tokenB, saJwt, clientToken]) expect(m).not.toContain(secret);
  }
});

interface Seen {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Record<string, unknown> | undefined;
}

type Handler = (req: Seen) => { status: number; json?: unknown; text?: string } | Promise<never>;

/** A fetch that records every request and answers with `handler`. */
function fakeVault(handler: Handler) {
  const seen: Seen[] = [];
  const fetch: Fetch = async (url: string, init: FetchInit) => {
    const req: Seen = {
      url,
      method: init.method,
      headers: init.headers,
      body: init.body === undefined ? undefined : (JSON.parse(init.body) as Record<string, unknown>),
    };
    seen.push(req);
    const answer = await handler(req);
    const text = answer.text ?? (answer.json === undefined ? "" : JSON.stringify(answer.json));
    return { status: answer.status, headers: new Headers(), text: async () => text };
  };
  return { fetch, seen, signs: () => seen.filter((r) => r.url.includes("/sign/")) };
}

const signed = (version = 1, sig: Buffer = rawSignature) => ({
  status: 200,
  json: { data: { signature: `vault:v${version}:${sig.toString("base64")}`, key_version: version } },
});

function context(
  overrides: Partial<SignerContext> = {},
): SignerContext & { clock: FakeClock; reads: number } {
  const c = {
    clock: new FakeClock(),
    timeoutMs: 2_000,
    reads: 0,
    readSecret: async () => {
      c.reads++;
      return tokenA;
    },
    serviceAccountToken: async () => saJwt,
    ...overrides,
  };
  return c as SignerContext & { clock: FakeClock; reads: number };
}

function signer(
  fetch: Fetch,
  ctx: SignerContext = context(),
  spec: Partial<VaultTransitSigner> = {},
): AppSigner {
  const s = createVaultTransitSigner(
    {
      address,
      mount: "transit",
      keyName: "app",
      auth: { tokenSecretRef: { name: "vault-token", key: "token" } },
      ...spec,
    },
    ctx,
    { fetch },
  );
  signers.push(s);
  return s;
}

async function caught(p: Promise<unknown>): Promise<GhatError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof GhatError) {
      messages.push(err.message);
      return err;
    }
    throw err;
  }
  throw new Error("expected a GhatError");
}

describe("Vault transit signer: requests and answers", () => {
  it("posts the base64 signing input with sha2-256 and pkcs1v15 and returns the raw signature", async () => {
    const vault = fakeVault(() => signed());
    const signature = await signer(vault.fetch).sign(input);
    expect(Buffer.from(signature)).toEqual(rawSignature);
    expect(vault.seen).toHaveLength(1);
    const req = vault.seen[0] as Seen;
    expect(req.method).toBe("POST");
    expect(req.url).toBe(`${address}/v1/transit/sign/app`);
    expect(req.headers["x-vault-token"]).toBe(tokenA);
    expect(req.headers["x-vault-namespace"]).toBeUndefined();
    expect(req.headers["content-type"]).toBe("application/json");
    expect(req.body).toEqual({
      input: Buffer.from(input).toString("base64"),
      hash_algorithm: "sha2-256",
      signature_algorithm: "pkcs1v15",
    });
  });

  it("names the namespace, a nested mount and the key version", async () => {
    const vault = fakeVault(() => signed(3));
    const s = signer(vault.fetch, context(), {
      address: `${address}/`,
      namespace: "team-a/ci",
      mount: "platform/transit",
      keyVersion: 3,
    });
    await s.sign(input);
    const req = vault.seen[0] as Seen;
    expect(req.url).toBe(`${address}/v1/platform/transit/sign/app`);
    expect(req.headers["x-vault-namespace"]).toBe("team-a/ci");
    expect(req.body?.key_version).toBe(3);
    expect(s.id).toContain(address);
    expect(s.id).toContain("team-a/ci");
    expect(s.id).toContain("platform/transit");
    expect(s.id).toContain("app");
    expect(s.id).toContain("v3");
    expect(s.kind).toBe("vaultTransit");
    const latest = signer(vault.fetch);
    expect(latest.id).toContain("latest");
    expect(latest.id).not.toBe(s.id);
  });

  it.each([
    ["no signature", { data: {} }],
    ["a number", { data: { signature: 42 } }],
    ["no vault: prefix", { data: { signature: rawSignature.toString("base64") } }],
    ["garbled base64", { data: { signature: "vault:v1:%%%notbase64%%%" } }],
    ["base64 of a bad length", { data: { signature: "vault:v1:QUJDRA=" } }],
    ["a version 0", { data: { signature: `vault:v0:${rawSignature.toString("base64")}` } }],
    ["a huge signature", { data: { signature: `vault:v1:${Buffer.alloc(4096, 1).toString("base64")}` } }],
    [
      "just over the bound",
      { data: { signature: `vault:v1:${Buffer.alloc(maxVaultSignatureBytes + 3, 1).toString("base64")}` } },
    ],
    ["megabytes of text", { data: { signature: `vault:v1:${"A".repeat(200_000)}` } }],
    ["not JSON", undefined],
  ])("refuses an answer with %s (SignerUnavailable)", async (_, json) => {
    const vault = fakeVault(() =>
      json === undefined ? { status: 200, text: "<html>" } : { status: 200, json },
    );
    const err = await caught(signer(vault.fetch).sign(input));
    expect(err.code).toBe("SignerUnavailable");
  });

  it("accepts a signature of exactly the bound", async () => {
    const big = Buffer.alloc(maxVaultSignatureBytes, 2);
    const vault = fakeVault(() => signed(1, big));
    expect(Buffer.from(await signer(vault.fetch).sign(input))).toEqual(big);
  });

  it("refuses a signature of another version than the configured one", async () => {
    const vault = fakeVault(() => signed(2));
    const err = await caught(signer(vault.fetch, context(), { keyVersion: 1 }).sign(input));
    expect(err.code).toBe("SignerUnavailable");
    expect(err.message).toContain("version 2");
  });
});

describe("Vault transit signer: classification", () => {
  it.each([
    [403, { errors: ["1 error occurred:\n\t* permission denied\n\n"] }, "SignerDenied", "permission denied"],
    [401, { errors: ["missing client token"] }, "SignerDenied", "missing client token"],
    [404, { errors: [] }, "SignerKeyNotFound", "404"],
    [400, { errors: ["signing key not found"] }, "SignerKeyNotFound", "signing key not found"],
    [
      400,
      { errors: ["key type aes256-gcm96 does not support signing"] },
      "SignerKeyNotFound",
      "does not support",
    ],
    [400, { errors: ["no such key"] }, "SignerKeyNotFound", "no such key"],
    [400, { errors: ["permission denied"] }, "SignerDenied", "permission denied"],
    [500, { errors: ["internal error"] }, "SignerUnavailable", "internal error"],
    [503, { errors: ["Vault is sealed"] }, "SignerUnavailable", "Vault is sealed"],
    [429, { errors: ["request path rate limited"] }, "SignerUnavailable", "429"],
    [412, { errors: ["required index state not present"] }, "SignerUnavailable", "412"],
    [307, undefined, "SignerUnavailable", "redirect"],
  ])("%i %j is %s", async (status, json, code, quoted) => {
    const vault = fakeVault(() => ({ status, ...(json === undefined ? {} : { json }) }));
    const err = await caught(signer(vault.fetch).sign(input));
    expect(err.code).toBe(code);
    expect(err.message).toContain(quoted);
    expect(err.message).toContain("Vault transit");
    expect(err.message).not.toMatch(/\n/);
  });

  it("is SignerUnavailable when Vault does not answer in time or the connection fails", async () => {
    const hang = fakeVault(
      (req) =>
        new Promise<never>((_, reject) => {
          void req;
          setTimeout(
            () => reject(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
            10,
          );
        }),
    );
    const slow = await caught(signer(hang.fetch).sign(input));
    expect(slow.code).toBe("SignerUnavailable");
    expect(slow.message).toContain("timed out");
    const refused = fakeVault(() =>
      Promise.reject(Object.assign(new TypeError("fetch failed"), { cause: { code: "ECONNREFUSED" } })),
    );
    const down = await caught(signer(refused.fetch).sign(input));
    expect(down.code).toBe("SignerUnavailable");
    expect(down.message).toContain("ECONNREFUSED");
  });

  it("honours the context's deadline against a Vault that never answers", async () => {
    const never: Fetch = (_url, init) =>
      new Promise((_, reject) => {
        init.signal.addEventListener("abort", () => reject(init.signal.reason));
      });
    const err = await caught(signer(never, context({ timeoutMs: 50 })).sign(input));
    expect(err.code).toBe("SignerUnavailable");
    expect(err.message).toContain("timed out");
  });

  it("never quotes a token or a JWT Vault echoes", async () => {
    const vault = fakeVault((req) => ({
      status: 403,
      json: { errors: [`token ${req.headers["x-vault-token"]} for ${saJwt} is not allowed`] },
    }));
    const err = await caught(signer(vault.fetch).sign(input));
    expect(err.code).toBe("SignerDenied");
    expect(err.message).not.toContain(tokenA);
    expect(err.message).not.toContain(saJwt);
    const k8s = fakeVault((req) =>
      req.url.endsWith("/login")
        ? { status: 400, json: { errors: [`invalid jwt ${String(req.body?.jwt)} bad`] } }
        : signed(),
    );
    const login = await caught(
      signer(k8s.fetch, context(), { auth: { kubernetes: { role: "ghat", mount: "kubernetes" } } }).sign(
        input,
      ),
    );
    expect(login.code).toBe("SignerDenied");
    expect(login.message).not.toContain(saJwt);
    const busy = fakeVault((req) => ({
      status: 500,
      json: { errors: [`backend failed for ${req.headers["x-vault-token"]}`] },
    }));
    const failed = await caught(signer(busy.fetch).sign(input));
    expect(failed.code).toBe("SignerUnavailable");
    expect(failed.message).toContain("backend failed for [REDACTED]");
  });
});

describe("Vault transit signer: tokenSecretRef", () => {
  it("reads the token once, and again after a 403, then signs with the new token", async () => {
    let current = tokenA;
    const ctx = context({
      readSecret: async (name, key) => {
        ctx.reads++;
        expect([name, key]).toEqual(["vault-token", "token"]);
        return current;
      },
    });
    const vault = fakeVault((req) =>
      req.headers["x-vault-token"] === current
        ? signed()
        : { status: 403, json: { errors: ["permission denied"] } },
    );
    const s = signer(vault.fetch, ctx);
    await s.sign(input);
    await s.sign(input);
    expect(ctx.reads).toBe(1);
    current = tokenB;
    await s.sign(input);
    expect(ctx.reads).toBe(2);
    expect(vault.signs().map((r) => r.headers["x-vault-token"])).toEqual([tokenA, tokenA, tokenA, tokenB]);
  });

  it("retries once, never in a loop, when Vault keeps refusing", async () => {
    let n = 0;
    const ctx = context({
      readSecret: async () => {
        ctx.reads++;
        n++;
        return n % 2 ? tokenA : tokenB;
      },
    });
    let deny = false;
    const vault = fakeVault(() =>
      deny ? { status: 403, json: { errors: ["permission denied"] } } : signed(),
    );
    const s = signer(vault.fetch, ctx);
    await s.sign(input);
    deny = true;
    const err = await caught(s.sign(input));
    expect(err.code).toBe("SignerDenied");
    expect(vault.signs()).toHaveLength(3);
    expect(ctx.reads).toBe(2);
  });

  it("does not ask again with the same refused token, nor retry a token read for this call", async () => {
    const ctx = context();
    const vault = fakeVault(() => ({ status: 403, json: { errors: ["permission denied"] } }));
    const s = signer(vault.fetch, ctx);
    expect((await caught(s.sign(input))).code).toBe("SignerDenied");
    expect(vault.signs()).toHaveLength(1);
    expect((await caught(s.sign(input))).code).toBe("SignerDenied");
    // The token was read again (it might have rotated) but was the same: not sent twice.
    expect(vault.signs()).toHaveLength(2);
  });

  it("is SignerDenied when the Secret or its key is missing", async () => {
    const vault = fakeVault(() => signed());
    const err = await caught(signer(vault.fetch, context({ readSecret: async () => undefined })).sign(input));
    expect(err.code).toBe("SignerDenied");
    expect(err.message).toContain("vault-token");
    expect(vault.seen).toHaveLength(0);
  });
});

describe("Vault transit signer: Kubernetes auth", () => {
  const k8sSpec = { auth: { kubernetes: { role: "ghat", mount: "kubernetes" } } };

  function k8sVault(lease = 3600, deny: () => boolean = () => false) {
    let issued = 0;
    const valid = new Set<string>();
    const vault = fakeVault((req) => {
      if (req.url.endsWith("/login")) {
        issued++;
        const token = `${clientToken}${issued}`;
        valid.add(token);
        return {
          status: 200,
          json: { auth: { client_token: token, lease_duration: lease, renewable: true } },
        };
      }
      if (deny() || !valid.has(req.headers["x-vault-token"] ?? "")) {
        return { status: 403, json: { errors: ["permission denied"] } };
      }
      return signed();
    });
    return { ...vault, logins: () => vault.seen.filter((r) => r.url.endsWith("/login")), valid };
  }

  it("logs in with the ServiceAccount token and signs with the client token", async () => {
    const vault = k8sVault();
    const s = signer(vault.fetch, context(), { ...k8sSpec, namespace: "team-a" });
    await s.sign(input);
    const [login, sign] = vault.seen as [Seen, Seen];
    expect(login.method).toBe("POST");
    expect(login.url).toBe(`${address}/v1/auth/kubernetes/login`);
    expect(login.body).toEqual({ role: "ghat", jwt: saJwt });
    expect(login.headers["x-vault-namespace"]).toBe("team-a");
    expect(login.headers["x-vault-token"]).toBeUndefined();
    expect(sign.headers["x-vault-token"]).toBe(`${clientToken}1`);
  });

  it("keeps the client token for two thirds of its lease, then logs in again", async () => {
    const vault = k8sVault(3000);
    const ctx = context();
    const s = signer(vault.fetch, ctx, k8sSpec);
    await s.sign(input);
    ctx.clock.advance(1_999_000);
    await s.sign(input);
    expect(vault.logins()).toHaveLength(1);
    ctx.clock.advance(2_000);
    await s.sign(input);
    expect(vault.logins()).toHaveLength(2);
  });

  it("shares one login between concurrent calls", async () => {
    const vault = k8sVault();
    const s = signer(vault.fetch, context(), k8sSpec);
    await Promise.all([s.sign(input), s.sign(input), s.sign(input)]);
    expect(vault.logins()).toHaveLength(1);
  });

  it("logs in again once after a 403 (a revoked token), and never loops", async () => {
    let deny = false;
    const vault = k8sVault(3600, () => deny);
    const s = signer(vault.fetch, context(), k8sSpec);
    await s.sign(input);
    vault.valid.clear();
    await s.sign(input);
    expect(vault.logins()).toHaveLength(2);
    deny = true;
    const err = await caught(s.sign(input));
    expect(err.code).toBe("SignerDenied");
    expect(vault.logins()).toHaveLength(3);
    expect(vault.signs()).toHaveLength(5);
  });

  it("is SignerDenied for a role Vault refuses, and when there is no ServiceAccount token", async () => {
    const vault = fakeVault(() => ({ status: 400, json: { errors: ['invalid role name "nope"'] } }));
    const err = await caught(signer(vault.fetch, context(), k8sSpec).sign(input));
    expect(err.code).toBe("SignerDenied");
    expect(err.message).toContain("invalid role name");
    const none = await caught(
      signer(vault.fetch, context({ serviceAccountToken: async () => undefined }), k8sSpec).sign(input),
    );
    expect(none.code).toBe("SignerDenied");
    expect(vault.seen).toHaveLength(1);
  });

  it("is SignerUnavailable when the login answers without a client token", async () => {
    const vault = fakeVault(() => ({ status: 200, json: { auth: null } }));
    expect((await caught(signer(vault.fetch, context(), k8sSpec).sign(input))).code).toBe(
      "SignerUnavailable",
    );
  });
});

describe("Vault transit signer: public key", () => {
  const pem = (bits = 2048) =>
    generateKeyPairSync("rsa", { modulusLength: bits })
      .publicKey.export({ type: "spki", format: "pem" })
      .toString();
  const v1 = pem();
  const v2 = pem();
  const keys = (type: string, extra: Record<string, unknown> = {}) => ({
    status: 200,
    json: {
      data: {
        type,
        latest_version: 2,
        keys: { "1": { public_key: v1, name: "rsa-2048" }, "2": { public_key: v2, name: "rsa-2048" } },
        ...extra,
      },
    },
  });

  it("reads the latest version's PEM, or the configured version's", async () => {
    const vault = fakeVault(() => keys("rsa-2048"));
    const latest = await signer(vault.fetch).publicKey();
    expect(latest?.export({ type: "spki", format: "pem" })).toBe(v2);
    const first = await signer(vault.fetch, context(), { keyVersion: 1 }).publicKey();
    expect(first?.export({ type: "spki", format: "pem" })).toBe(v1);
    expect(vault.seen[0]?.method).toBe("GET");
    expect(vault.seen[0]?.url).toBe(`${address}/v1/transit/keys/app`);
    expect(vault.seen[0]?.headers["x-vault-token"]).toBe(tokenA);
  });

  it.each([
    ["an AES key", keys("aes256-gcm96", { keys: { "1": 1700000000 } })],
    ["an ECDSA key", keys("ecdsa-p256")],
    ["an HMAC key", keys("hmac")],
    ["no type", { status: 200, json: { data: { keys: {} } } }],
    ["an unknown version", keys("rsa-2048", { latest_version: 7 })],
    [
      "an unreadable PEM",
      keys("rsa-2048", {
        keys: { "2": { public_key: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" } },
      }),
    ],
    ["a 404", { status: 404, json: { errors: [] } }],
  ])("is SignerKeyNotFound for %s", async (_, answer) => {
    const vault = fakeVault(() => answer);
    expect((await caught(signer(vault.fetch).publicKey())).code).toBe("SignerKeyNotFound");
  });
});

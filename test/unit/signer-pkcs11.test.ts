import { generateKeyPairSync, sign as rsaSign, verify } from "node:crypto";
import { createRequire } from "node:module";
import type * as Pkcs11js from "pkcs11js";
import { describe, expect, it } from "vitest";
import type { Pkcs11Signer } from "../../src/api/signer.ts";
import { systemClock } from "../../src/clock.ts";
import { GhatError } from "../../src/core/errors.ts";
import { createPkcs11Signer, type Pkcs11Library } from "../../src/signer/pkcs11.ts";
import type { SignerContext } from "../../src/signer/types.ts";
import { FakeClock } from "./fakeclock.ts";

// pkcs11js for its constants and error class; the module itself is a fake (no .so is loaded).
const real = createRequire(import.meta.url)("pkcs11js") as typeof Pkcs11js;
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = publicKey.export({ format: "jwk" });
const pin = "246810";
const modulePath = "/usr/lib/fake/libfakehsm.so";

interface FakeObject {
  class: number;
  label: string;
  id: Buffer;
  keyType: number;
  sign: boolean;
}

const ulong = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const ckrError = (name: keyof typeof real) => new real.Pkcs11Error(`${name}:${real[name] as number}`);

/** A fake PKCS#11 module: one slot (id 7, token "tok"), a login shared by all sessions. */
function fakeModule() {
  const state = {
    instances: 0,
    initialised: 0,
    loaded: [] as string[],
    loggedIn: false,
    sessions: new Set<string>(),
    opened: 0,
    logouts: 0,
    closes: 0,
    inFlight: 0,
    maxInFlight: 0,
    pinsTried: [] as string[],
    /** Thrown by the next C_SignAsync calls, in order. */
    signFailures: [] as Error[],
    /** When set, C_SignAsync waits for it. */
    signGate: undefined as Promise<void> | undefined,
    loginFailure: undefined as Error | undefined,
    objects: [
      {
        class: real.CKO_PRIVATE_KEY,
        label: "app",
        id: Buffer.from("01", "hex"),
        keyType: real.CKK_RSA,
        sign: true,
      },
      {
        class: real.CKO_PUBLIC_KEY,
        label: "app",
        id: Buffer.from("01", "hex"),
        keyType: real.CKK_RSA,
        sign: false,
      },
    ] as FakeObject[],
  };
  const search = new Map<string, FakeObject[]>();
  class FakePKCS11 {
    libPath = "";
    constructor() {
      state.instances++;
    }
    load(path: string) {
      state.loaded.push(path);
    }
    C_Initialize() {
      if (state.initialised > 0) throw ckrError("CKR_CRYPTOKI_ALREADY_INITIALIZED");
      state.initialised++;
    }
    C_GetSlotList() {
      return [ulong(7)];
    }
    C_GetTokenInfo() {
      return { label: "tok".padEnd(32, " ") };
    }
    C_OpenSession() {
      const h = ulong(1000 + state.opened++);
      state.sessions.add(h.toString("hex"));
      return h;
    }
    C_CloseSession(h: Buffer) {
      state.closes++;
      state.sessions.delete(h.toString("hex"));
      if (state.sessions.size === 0) state.loggedIn = false;
    }
    C_Login(_h: Buffer, _user: number, p: string) {
      state.pinsTried.push(p);
      if (state.loginFailure) throw state.loginFailure;
      if (state.loggedIn) throw ckrError("CKR_USER_ALREADY_LOGGED_IN");
      if (p !== pin) throw ckrError("CKR_PIN_INCORRECT");
      state.loggedIn = true;
    }
    C_Logout() {
      state.logouts++;
      state.loggedIn = false;
    }
    C_FindObjectsInit(h: Buffer, template: Pkcs11js.Template) {
      const want = (type: number) => template.find((a) => a.type === type)?.value;
      search.set(
        h.toString("hex"),
        state.objects.filter(
          (o) =>
            o.class === want(real.CKA_CLASS) &&
            (want(real.CKA_LABEL) === undefined || o.label === want(real.CKA_LABEL)) &&
            (want(real.CKA_ID) === undefined || o.id.equals(want(real.CKA_ID) as Buffer)),
        ),
      );
    }
    C_FindObjects(h: Buffer, max: number) {
      return (search.get(h.toString("hex")) ?? []).slice(0, max).map((o) => ulong(state.objects.indexOf(o)));
    }
    C_FindObjectsFinal(h: Buffer) {
      search.delete(h.toString("hex"));
    }
    C_GetAttributeValue(_h: Buffer, obj: Buffer, template: Pkcs11js.Template) {
      const o = state.objects[Number(obj.readBigUInt64LE())] as FakeObject;
      return template.map(({ type }) => {
        if (type === real.CKA_KEY_TYPE) return { type, value: ulong(o.keyType) };
        if (type === real.CKA_SIGN) return { type, value: Buffer.from([o.sign ? 1 : 0]) };
        if (type === real.CKA_MODULUS) return { type, value: Buffer.from(jwk.n as string, "base64url") };
        if (type === real.CKA_PUBLIC_EXPONENT)
          return { type, value: Buffer.from(jwk.e as string, "base64url") };
        return { type };
      });
    }
    C_SignInit(h: Buffer) {
      if (!state.sessions.has(h.toString("hex"))) throw ckrError("CKR_SESSION_HANDLE_INVALID");
    }
    async C_SignAsync(h: Buffer, data: Buffer, out: Buffer) {
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      try {
        await state.signGate;
        const failure = state.signFailures.shift();
        if (failure) throw failure;
        if (!state.loggedIn || !state.sessions.has(h.toString("hex")))
          throw ckrError("CKR_USER_NOT_LOGGED_IN");
        const sig = rsaSign("sha256", data, privateKey);
        sig.copy(out);
        return out.subarray(0, sig.length);
      } finally {
        state.inFlight--;
      }
    }
  }
  const lib = { ...real, PKCS11: FakePKCS11 } as unknown as Pkcs11Library;
  return { lib, state };
}

const spec = (over: Partial<Pkcs11Signer> = {}): Pkcs11Signer => ({
  module: modulePath,
  tokenLabel: "tok",
  keyLabel: "app",
  pinSecretRef: { name: "hsm", key: "pin" },
  ...over,
});

function context(secrets: Record<string, string> = { "hsm/pin": pin }, clock = systemClock): SignerContext {
  return {
    clock,
    timeoutMs: 5000,
    readSecret: async (name, key) => secrets[`${name}/${key}`],
    serviceAccountToken: async () => undefined,
  };
}

async function failure(work: Promise<unknown>): Promise<GhatError> {
  const err = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GhatError);
  return err as GhatError;
}

const input = new TextEncoder().encode("header.payload");

describe("createPkcs11Signer", () => {
  it("refuses a module not named by --pkcs11-module without loading anything", () => {
    const { lib, state } = fakeModule();
    for (const allowedModules of [[], ["/usr/lib/softhsm/libsofthsm2.so"]]) {
      let thrown: unknown;
      try {
        createPkcs11Signer(spec({ module: "/tmp/x/evil.so" }), context(), { allowedModules, library: lib });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(GhatError);
      expect((thrown as GhatError).code).toBe("SignerDenied");
      expect((thrown as GhatError).message).toContain("--pkcs11-module");
      expect((thrown as GhatError).message).toContain("/tmp/x/evil.so");
    }
    // A path that only resolves to an allowed one is still refused: the comparison is exact.
    expect(() =>
      createPkcs11Signer(spec({ module: "/usr/lib/fake/../fake/libfakehsm.so" }), context(), {
        allowedModules: [modulePath],
        library: lib,
      }),
    ).toThrow(/--pkcs11-module/);
    expect(state.instances).toBe(0);
    expect(state.loaded).toEqual([]);
  });

  it("signs with CKM_SHA256_RSA_PKCS, loading and initialising the module once for all signers", async () => {
    const { lib, state } = fakeModule();
    const options = { allowedModules: [modulePath], library: lib };
    const a = createPkcs11Signer(spec(), context(), options);
    const b = createPkcs11Signer(
      spec({ tokenLabel: undefined, slot: 7, keyLabel: undefined, keyId: "01" }),
      context(),
      options,
    );
    expect(state.instances).toBe(0);
    expect(verify("sha256", input, publicKey, await a.sign(input))).toBe(true);
    expect(verify("sha256", input, publicKey, await b.sign(input))).toBe(true);
    expect(state.instances).toBe(1);
    expect(state.initialised).toBe(1);
    expect(state.opened).toBe(2);
    expect(a.kind).toBe("pkcs11");
    expect(a.id).toBe(`pkcs11:${modulePath}|tok|app|`);
    expect(b.id).toBe(`pkcs11:${modulePath}|slot:7||01`);
  });

  it("answers the public object as a KeyObject, and undefined when the token has none", async () => {
    const { lib, state } = fakeModule();
    const signer = createPkcs11Signer(spec(), context(), { allowedModules: [modulePath], library: lib });
    const key = await signer.publicKey();
    expect(key?.export({ format: "jwk" })).toEqual(jwk);
    state.objects = state.objects.filter((o) => o.class !== real.CKO_PUBLIC_KEY);
    expect(await signer.publicKey()).toBeUndefined();
  });

  it("refuses a wrong PIN as SignerDenied, quoting the CKR_ code and never the PIN", async () => {
    const { lib } = fakeModule();
    const signer = createPkcs11Signer(spec(), context({ "hsm/pin": "13579-wrong" }), {
      allowedModules: [modulePath],
      library: lib,
    });
    const err = await failure(signer.sign(input));
    expect(err.code).toBe("SignerDenied");
    expect(err.message).toContain("CKR_PIN_INCORRECT");
    expect(err.message).not.toContain("13579");
    for (const code of ["CKR_PIN_LOCKED", "CKR_PIN_EXPIRED"] as const) {
      const fake = fakeModule();
      fake.state.loginFailure = ckrError(code);
      const s = createPkcs11Signer(spec(), context(), { allowedModules: [modulePath], library: fake.lib });
      const e = await failure(s.sign(input));
      expect(e.code).toBe("SignerDenied");
      expect(e.message).toContain(code);
      expect(e.message).not.toContain(pin);
    }
  });

  it("refuses a wrong PIN while another signer holds the token's shared login", async () => {
    const { lib, state } = fakeModule();
    const options = { allowedModules: [modulePath], library: lib };
    const good = createPkcs11Signer(spec(), context(), options);
    await good.sign(input);
    const bad = createPkcs11Signer(spec(), context({ "hsm/pin": "999999" }), options);
    const err = await failure(bad.sign(input));
    expect(err.code).toBe("SignerDenied");
    expect(err.message).not.toContain("999999");
    expect(err.message).not.toContain(pin);
    // The same PIN rides on the login; the refused signer's session is gone, the login is not.
    const same = createPkcs11Signer(spec(), context(), options);
    expect(verify("sha256", input, publicKey, await same.sign(input))).toBe(true);
    expect(state.loggedIn).toBe(true);
    expect(state.sessions.size).toBe(2);
  });

  it("names a missing PIN Secret without reading anything else, and strips a trailing newline", async () => {
    const { lib } = fakeModule();
    const options = { allowedModules: [modulePath], library: lib };
    const missing = await failure(createPkcs11Signer(spec(), context({}), options).sign(input));
    expect(missing.code).toBe("SignerDenied");
    expect(missing.message).toMatch(/PIN Secret hsm has no key pin/);
    const withNewline = createPkcs11Signer(spec(), context({ "hsm/pin": `${pin}\n` }), options);
    expect(verify("sha256", input, publicKey, await withNewline.sign(input))).toBe(true);
  });

  it("reports a missing token, a missing or ambiguous key and a non-RSA or non-signing key as SignerKeyNotFound", async () => {
    const cases: [Partial<Pkcs11Signer>, (objects: FakeObject[]) => FakeObject[], RegExp][] = [
      [{ tokenLabel: "other" }, (o) => o, /no token "other"/],
      [{ slot: 8, tokenLabel: undefined }, (o) => o, /no slot 8/],
      [{ keyLabel: "nope" }, (o) => o, /no private key with label "nope"/],
      [{}, (o) => [...o, { ...(o[0] as FakeObject), id: Buffer.from("02", "hex") }], /several private keys/],
      [{}, (o) => [{ ...(o[0] as FakeObject), keyType: real.CKK_EC }], /not an RSA key/],
      [{}, (o) => [{ ...(o[0] as FakeObject), sign: false }], /may not sign/],
    ];
    for (const [over, objects, pattern] of cases) {
      const { lib, state } = fakeModule();
      state.objects = objects(state.objects);
      const signer = createPkcs11Signer(spec(over), context(), {
        allowedModules: [modulePath],
        library: lib,
      });
      const err = await failure(signer.sign(input));
      expect(err.code).toBe("SignerKeyNotFound");
      expect(err.message).toMatch(pattern);
      // A failed open leaves no session behind.
      expect(state.sessions.size).toBe(0);
    }
  });

  it("opens a new session and logs in again once after a lost session or login", async () => {
    const { lib, state } = fakeModule();
    const signer = createPkcs11Signer(spec(), context(), { allowedModules: [modulePath], library: lib });
    await signer.sign(input);
    for (const code of [
      "CKR_USER_NOT_LOGGED_IN",
      "CKR_SESSION_HANDLE_INVALID",
      "CKR_DEVICE_REMOVED",
    ] as const) {
      state.signFailures.push(ckrError(code));
      expect(verify("sha256", input, publicKey, await signer.sign(input))).toBe(true);
    }
    expect(state.opened).toBe(4);
    expect(state.sessions.size).toBe(1);
    // Twice in a row is not retried again.
    state.signFailures.push(ckrError("CKR_USER_NOT_LOGGED_IN"), ckrError("CKR_USER_NOT_LOGGED_IN"));
    const err = await failure(signer.sign(input));
    expect(err.code).toBe("SignerUnavailable");
    expect(err.message).toContain("CKR_USER_NOT_LOGGED_IN");
  });

  it("reports device and general errors as SignerUnavailable (retryable)", async () => {
    for (const code of [
      "CKR_DEVICE_ERROR",
      "CKR_GENERAL_ERROR",
      "CKR_DEVICE_MEMORY",
      "CKR_FUNCTION_FAILED",
    ] as const) {
      const { lib, state } = fakeModule();
      state.signFailures.push(ckrError(code));
      const signer = createPkcs11Signer(spec(), context(), { allowedModules: [modulePath], library: lib });
      const err = await failure(signer.sign(input));
      expect(err.code).toBe("SignerUnavailable");
      expect(err.retryable).toBe(true);
      expect(err.message).toContain(code);
      expect(err.message).not.toContain(pin);
    }
  });

  it("serialises the calls of one signer on its session", async () => {
    const { lib, state } = fakeModule();
    let open = () => {};
    state.signGate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const signer = createPkcs11Signer(spec(), context(), { allowedModules: [modulePath], library: lib });
    const all = Promise.all([1, 2, 3].map((n) => signer.sign(new Uint8Array([n]))));
    await expect.poll(() => state.inFlight).toBe(1);
    open();
    const signatures = await all;
    expect(state.maxInFlight).toBe(1);
    signatures.forEach((s, i) => {
      expect(verify("sha256", new Uint8Array([i + 1]), publicKey, s)).toBe(true);
    });
  });

  it("gives up on a token that does not answer within the timeout", async () => {
    const { lib, state } = fakeModule();
    state.signGate = new Promise<void>(() => {});
    const clock = new FakeClock();
    const signer = createPkcs11Signer(spec(), context({ "hsm/pin": pin }, clock), {
      allowedModules: [modulePath],
      library: lib,
    });
    const signing = signer.sign(input);
    await expect.poll(() => state.inFlight).toBe(1);
    clock.advance(5000);
    const err = await failure(signing);
    expect(err.code).toBe("SignerUnavailable");
    expect(err.message).toMatch(/did not answer within 5000 ms/);
  });

  it("logs out and closes its session on close, and refuses to sign afterwards", async () => {
    const { lib, state } = fakeModule();
    const options = { allowedModules: [modulePath], library: lib };
    const a = createPkcs11Signer(spec(), context(), options);
    const b = createPkcs11Signer(spec(), context(), options);
    await a.sign(input);
    await b.sign(input);
    await a.close?.();
    // Not the last session on the token: b's login stays.
    expect(state.logouts).toBe(0);
    expect(verify("sha256", input, publicKey, await b.sign(input))).toBe(true);
    await b.close?.();
    expect(state.logouts).toBe(1);
    expect(state.sessions.size).toBe(0);
    expect((await failure(a.sign(input))).code).toBe("SignerUnavailable");
  });
});

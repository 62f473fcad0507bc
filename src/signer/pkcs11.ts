import { createHmac, createPublicKey, type KeyObject, randomBytes, timingSafeEqual } from "node:crypto";
import { createRequire } from "node:module";
import type * as Pkcs11js from "pkcs11js";
import type { Pkcs11Signer } from "../api/signer.ts";
import { GhatError } from "../core/errors.ts";
import { quotable } from "../github/classify.ts";
import type { AppSigner, SignerContext } from "./types.ts";

/** The pkcs11js module (or, in tests, a stand-in with the same shape). */
export type Pkcs11Library = typeof Pkcs11js;
type Handle = Buffer;

export interface Pkcs11SignerOptions {
  /** Module paths the operator may load (`--pkcs11-module`); anything else is refused unloaded. */
  allowedModules: readonly string[];
  /** For tests: a stand-in for pkcs11js. */
  library?: Pkcs11Library | undefined;
}

/** Largest RSA signature accepted back: 8192-bit keys. */
const maxSignatureBytes = 1024;

/**
 * Return values after which the session (or the login) is gone: the signer opens a new
 * session, logs in again and retries the call once.
 */
const reopenCodes = new Set([
  "CKR_SESSION_HANDLE_INVALID",
  "CKR_SESSION_CLOSED",
  "CKR_USER_NOT_LOGGED_IN",
  "CKR_DEVICE_REMOVED",
  "CKR_TOKEN_NOT_PRESENT",
  "CKR_OBJECT_HANDLE_INVALID",
  "CKR_KEY_HANDLE_INVALID",
]);

/** The token refused the PIN. */
const deniedCodes = new Set([
  "CKR_PIN_INCORRECT",
  "CKR_PIN_LOCKED",
  "CKR_PIN_EXPIRED",
  "CKR_PIN_INVALID",
  "CKR_PIN_LEN_RANGE",
  "CKR_USER_PIN_NOT_INITIALIZED",
  "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
]);

/** The key is not there or cannot make CKM_SHA256_RSA_PKCS signatures. */
const keyNotFoundCodes = new Set([
  "CKR_KEY_HANDLE_INVALID",
  "CKR_OBJECT_HANDLE_INVALID",
  "CKR_KEY_TYPE_INCONSISTENT",
  "CKR_KEY_FUNCTION_NOT_PERMITTED",
  "CKR_KEY_SIZE_RANGE",
  "CKR_MECHANISM_INVALID",
  "CKR_SLOT_ID_INVALID",
  "CKR_TOKEN_NOT_RECOGNIZED",
]);

/** One loaded and initialised module per path (per library, so tests' fakes stay apart). */
interface LoadedModule {
  pkcs11: Pkcs11js.PKCS11;
  /** Sessions this process has open per slot (hex of the slot handle): logout only with the last. */
  sessions: Map<string, number>;
  /**
   * Per slot, a keyed hash of the PIN that logged the token in. PKCS#11 login state is shared by
   * every session of the process on a token, so C_Login answers CKR_USER_ALREADY_LOGGED_IN
   * without checking the PIN: another App's signer must not ride on that login with a wrong PIN.
   */
  logins: Map<string, Buffer>;
}
const loaded = new WeakMap<Pkcs11Library, Map<string, Promise<LoadedModule>>>();
/** Key of the PIN hashes above: random per process, so a hash is no PIN-equivalent anywhere else. */
const pinHashKey = randomBytes(32);

interface Session {
  handle: Handle;
  slotKey: string;
  key: Handle;
}

/**
 * Signs with an RSA private key in an HSM through a PKCS#11 module (CKM_SHA256_RSA_PKCS: the
 * token hashes the JWT's signing input and pads it as PKCS#1 v1.5). The module path comes
 * from a tenant's spec, and loading a shared object runs its code inside the operator, so
 * only the modules the operator was started with (`--pkcs11-module`) are loaded: any other
 * path is refused before anything is opened. Each module is loaded and initialised once per
 * process and shared; each signer has its own session, opened and logged in (as the user,
 * with the PIN from the App's Secret) on first use, and its calls are serialised. C_Sign runs
 * on libuv's thread pool, so a slow token does not block the event loop. After a lost
 * session, a lost login or a removed token the session is opened again once.
 */
export function createPkcs11Signer(
  spec: Pkcs11Signer,
  ctx: SignerContext,
  options: Pkcs11SignerOptions,
): AppSigner {
  const where = `PKCS#11 module ${spec.module}`;
  if (!options.allowedModules.includes(spec.module)) {
    const allowed = options.allowedModules.length ? options.allowedModules.join(", ") : "none";
    throw new GhatError(
      "SignerDenied",
      `${where} is not allowed: the operator loads only the modules named by its --pkcs11-module flag (allowed: ${allowed})`,
    );
  }
  const lib = options.library ?? requirePkcs11js();
  // Labels are the tenant's text: quoted as JSON strings, so control characters stay escaped.
  const token =
    spec.tokenLabel !== undefined ? `token ${JSON.stringify(spec.tokenLabel)}` : `slot ${spec.slot}`;
  const keyName = [
    spec.keyLabel !== undefined ? `label ${JSON.stringify(spec.keyLabel)}` : "",
    spec.keyId !== undefined ? `id ${spec.keyId.toLowerCase()}` : "",
  ]
    .filter(Boolean)
    .join(", ");
  const what = `PKCS#11 ${token}`;
  let session: Session | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;

  /** Runs `fn` after every earlier call of this signer: one operation at a time per session. */
  function serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  }

  async function open(): Promise<{ module: LoadedModule; session: Session }> {
    const module = await loadModule(lib, spec.module, where);
    if (session) return { module, session };
    const pin = await ctx.readSecret(spec.pinSecretRef.name, spec.pinSecretRef.key);
    if (pin === undefined) {
      throw new GhatError(
        "SignerDenied",
        `${what}: the PIN Secret ${spec.pinSecretRef.name} has no key ${spec.pinSecretRef.key}`,
      );
    }
    const p = module.pkcs11;
    const slot = step(lib, what, "finding the token", () => findSlot(p, spec));
    if (slot === undefined) {
      throw new GhatError("SignerKeyNotFound", `${where} has no ${token} (with a token present)`);
    }
    const slotKey = slot.toString("hex");
    const handle = step(lib, what, "C_OpenSession", () => p.C_OpenSession(slot, lib.CKF_SERIAL_SESSION));
    module.sessions.set(slotKey, (module.sessions.get(slotKey) ?? 0) + 1);
    try {
      // A Secret made from a file often ends in a newline that is no part of the PIN.
      login(module, handle, slotKey, pin.replace(/\r?\n$/, ""));
      const key = findKey(module, handle);
      session = { handle, slotKey, key };
      return { module, session };
    } catch (err) {
      release(module, { handle, slotKey, key: Buffer.alloc(0) });
      throw err;
    }
  }

  function login(module: LoadedModule, handle: Handle, slotKey: string, pin: string): void {
    const pinHash = createHmac("sha256", pinHashKey).update(pin).digest();
    try {
      module.pkcs11.C_Login(handle, lib.CKU_USER, pin);
      module.logins.set(slotKey, pinHash);
      return;
    } catch (err) {
      if (ckr(lib, err) !== "CKR_USER_ALREADY_LOGGED_IN")
        throw classifyPkcs11Error(lib, err, what, "C_Login");
    }
    // Logged in by another signer of this process: only with the same PIN.
    const known = module.logins.get(slotKey);
    if (!known || !timingSafeEqual(known, pinHash)) {
      throw new GhatError(
        "SignerDenied",
        `${what}: the token is logged in with another PIN; this signer's PIN is refused`,
      );
    }
  }

  function findKey(module: LoadedModule, handle: Handle): Handle {
    const p = module.pkcs11;
    const found = step(lib, what, "C_FindObjects", () =>
      findObjects(lib, p, handle, lib.CKO_PRIVATE_KEY, spec),
    );
    if (found.length === 0) {
      throw new GhatError(
        "SignerKeyNotFound",
        `${what} has no private key with ${keyName} (or the PIN's user cannot see it)`,
      );
    }
    if (found.length > 1) {
      throw new GhatError(
        "SignerKeyNotFound",
        `${what} has several private keys with ${keyName}; name the key by keyLabel and keyId`,
      );
    }
    const key = found[0] as Handle;
    const attrs = step(lib, what, "C_GetAttributeValue", () =>
      p.C_GetAttributeValue(handle, key, [{ type: lib.CKA_KEY_TYPE }, { type: lib.CKA_SIGN }]),
    );
    const keyType = attrs.find((a) => a.type === lib.CKA_KEY_TYPE)?.value;
    const canSign = attrs.find((a) => a.type === lib.CKA_SIGN)?.value;
    if (ulong(keyType) !== lib.CKK_RSA) {
      throw new GhatError("SignerKeyNotFound", `${what}: the private key with ${keyName} is not an RSA key`);
    }
    if (!bool(canSign)) {
      throw new GhatError(
        "SignerKeyNotFound",
        `${what}: the private key with ${keyName} may not sign (CKA_SIGN is false)`,
      );
    }
    return key;
  }

  /** Closes a session; the last one of the process on a token logs it out first. */
  function release(module: LoadedModule, s: Session): void {
    const p = module.pkcs11;
    const left = (module.sessions.get(s.slotKey) ?? 1) - 1;
    if (left <= 0) {
      module.sessions.delete(s.slotKey);
      module.logins.delete(s.slotKey);
      try {
        p.C_Logout(s.handle);
      } catch {
        // Not logged in, or the session is already gone: closing is what matters.
      }
    } else {
      module.sessions.set(s.slotKey, left);
    }
    try {
      p.C_CloseSession(s.handle);
    } catch {
      // Already closed (token removed, module reset).
    }
  }

  /** Runs `op` on an open session; a lost session or login is opened again, once. */
  async function withSession<T>(op: (module: LoadedModule, s: Session) => Promise<T>): Promise<T> {
    if (closed) throw new GhatError("SignerUnavailable", `${what}: the signer is closed`);
    for (let attempt = 0; ; attempt++) {
      const { module, session: s } = await open();
      try {
        return await op(module, s);
      } catch (err) {
        const code = ckr(lib, err);
        if (attempt > 0 || code === undefined || !reopenCodes.has(code)) throw err;
        session = undefined;
        release(module, s);
      }
    }
  }

  return {
    id: `pkcs11:${spec.module}|${spec.tokenLabel ?? `slot:${spec.slot}`}|${spec.keyLabel ?? ""}|${spec.keyId?.toLowerCase() ?? ""}`,
    kind: "pkcs11",
    sign(input: Uint8Array): Promise<Uint8Array> {
      const signing = serialised(() =>
        withSession(async (module, s) => {
          const p = module.pkcs11;
          p.C_SignInit(s.handle, { mechanism: lib.CKM_SHA256_RSA_PKCS }, s.key);
          const out = await p.C_SignAsync(s.handle, Buffer.from(input), Buffer.alloc(maxSignatureBytes));
          if (out.length === 0)
            throw new GhatError("SignerUnavailable", `${what} answered an empty signature`);
          return new Uint8Array(out);
        }),
      ).catch((err: unknown) => {
        throw classifyPkcs11Error(lib, err, what, "C_Sign");
      });
      return withDeadline(signing, ctx, what);
    },
    publicKey(): Promise<KeyObject | undefined> {
      return serialised(() =>
        withSession(async (module, s) => {
          const p = module.pkcs11;
          const found = findObjects(lib, p, s.handle, lib.CKO_PUBLIC_KEY, spec);
          const pub = found[0];
          if (found.length !== 1 || pub === undefined) return undefined;
          const attrs = p.C_GetAttributeValue(s.handle, pub, [
            { type: lib.CKA_MODULUS },
            { type: lib.CKA_PUBLIC_EXPONENT },
          ]);
          const n = attrs.find((a) => a.type === lib.CKA_MODULUS)?.value;
          const e = attrs.find((a) => a.type === lib.CKA_PUBLIC_EXPONENT)?.value;
          if (!Buffer.isBuffer(n) || !Buffer.isBuffer(e)) return undefined;
          try {
            return createPublicKey({
              key: { kty: "RSA", n: unsigned(n).toString("base64url"), e: unsigned(e).toString("base64url") },
              format: "jwk",
            });
          } catch {
            throw new GhatError(
              "SignerKeyNotFound",
              `${what}: the public key with ${keyName} cannot be read`,
            );
          }
        }),
      ).catch((err: unknown) => {
        throw classifyPkcs11Error(lib, err, what, "reading the public key");
      });
    },
    close(): Promise<void> {
      return serialised(async () => {
        closed = true;
        const s = session;
        session = undefined;
        if (!s) return;
        const module = await loadModule(lib, spec.module, where);
        release(module, s);
      });
    },
  };
}

/** pkcs11js, required on first use: an operator without PKCS#11 signers never loads it. */
function requirePkcs11js(): Pkcs11Library {
  try {
    return createRequire(import.meta.url)("pkcs11js") as Pkcs11Library;
  } catch {
    throw new GhatError(
      "SignerUnavailable",
      "PKCS#11: the pkcs11js module cannot be loaded in this build of ghat",
    );
  }
}

/** Loads and initialises a module once per process; a failed load is tried again next time. */
function loadModule(lib: Pkcs11Library, path: string, where: string): Promise<LoadedModule> {
  let modules = loaded.get(lib);
  if (!modules) {
    modules = new Map();
    loaded.set(lib, modules);
  }
  const existing = modules.get(path);
  if (existing) return existing;
  const loading = (async (): Promise<LoadedModule> => {
    const pkcs11 = new lib.PKCS11();
    try {
      pkcs11.load(path);
    } catch (err) {
      throw new GhatError("SignerUnavailable", `${where} cannot be loaded${nativeReason(err)}`);
    }
    try {
      // C_Sign runs on libuv's threads: the module must lock for itself.
      pkcs11.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
    } catch (err) {
      if (ckr(lib, err) !== "CKR_CRYPTOKI_ALREADY_INITIALIZED") {
        try {
          pkcs11.close();
        } catch {
          // The load failed half-way; nothing more to release.
        }
        throw classifyPkcs11Error(lib, err, where, "C_Initialize");
      }
    }
    return { pkcs11, sessions: new Map(), logins: new Map() };
  })();
  modules.set(path, loading);
  loading.catch(() => {
    if (modules.get(path) === loading) modules.delete(path);
  });
  return loading;
}

/** The slot of the token named by label (CK_TOKEN_INFO pads it with blanks) or by slot id. */
function findSlot(p: Pkcs11js.PKCS11, spec: Pkcs11Signer): Handle | undefined {
  for (const slot of p.C_GetSlotList(true)) {
    if (spec.slot !== undefined) {
      if (ulong(slot) === spec.slot) return slot;
      continue;
    }
    const label = p.C_GetTokenInfo(slot).label.replace(/[\s\0]+$/, "");
    if (label === spec.tokenLabel?.trim()) return slot;
  }
  return undefined;
}

/** Objects of a class matching the spec's key label and/or id (at most 2: one is expected). */
function findObjects(
  lib: Pkcs11Library,
  p: Pkcs11js.PKCS11,
  session: Handle,
  objectClass: number,
  spec: Pkcs11Signer,
): Handle[] {
  const template: Pkcs11js.Template = [{ type: lib.CKA_CLASS, value: objectClass }];
  if (spec.keyLabel !== undefined) template.push({ type: lib.CKA_LABEL, value: spec.keyLabel });
  if (spec.keyId !== undefined) template.push({ type: lib.CKA_ID, value: Buffer.from(spec.keyId, "hex") });
  p.C_FindObjectsInit(session, template);
  try {
    return p.C_FindObjects(session, 2);
  } finally {
    p.C_FindObjectsFinal(session);
  }
}

/** Runs a synchronous PKCS#11 step, classifying what it throws (except reopen codes, kept raw). */
function step<T>(lib: Pkcs11Library, what: string, name: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const code = ckr(lib, err);
    if (code !== undefined && reopenCodes.has(code)) throw err;
    throw classifyPkcs11Error(lib, err, what, name);
  }
}

/** The CKR_… name of a pkcs11js error, if it is one. */
export function ckr(lib: Pkcs11Library, err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  if (/^CKR_[A-Z0-9_]+$/.test(err.message)) return err.message;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "number" && code !== 0) {
    for (const [name, value] of Object.entries(lib)) {
      if (name.startsWith("CKR_") && value === code) return name;
    }
  }
  return undefined;
}

/**
 * A PKCS#11 failure as a GhatError: a refused PIN is SignerDenied, a missing or unusable key
 * SignerKeyNotFound, and the rest (device errors, a removed token, memory, general errors)
 * SignerUnavailable. Messages name the step and the CKR_ code, never the PIN.
 */
export function classifyPkcs11Error(
  lib: Pkcs11Library,
  err: unknown,
  what: string,
  stepName: string,
): GhatError {
  if (err instanceof GhatError) return err;
  const code = ckr(lib, err);
  if (code === undefined) {
    return new GhatError("SignerUnavailable", `${what}: ${stepName} failed${nativeReason(err)}`, {
      cause: err,
    });
  }
  const message = `${what}: ${stepName} failed with ${code}`;
  if (deniedCodes.has(code)) return new GhatError("SignerDenied", message, { cause: err });
  if (keyNotFoundCodes.has(code)) return new GhatError("SignerKeyNotFound", message, { cause: err });
  return new GhatError("SignerUnavailable", message, { cause: err });
}

/** A native (not CKR_) error's first line, bounded and redacted. */
function nativeReason(err: unknown): string {
  const text = err instanceof Error ? (err.message.split("\n")[0] ?? "") : "";
  const q = quotable(text);
  return q ? `: ${q}` : "";
}

/** Bounds a call by the context's deadline; the native call itself finishes in the background. */
function withDeadline<T>(work: Promise<T>, ctx: SignerContext, what: string): Promise<T> {
  let cancel: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    cancel = ctx.clock.setTimer(ctx.timeoutMs, () =>
      reject(new GhatError("SignerUnavailable", `${what} did not answer within ${ctx.timeoutMs} ms`)),
    );
  });
  return Promise.race([work, deadline]).finally(() => cancel?.());
}

/** A CK_ULONG as pkcs11js returns it: a number, or a little-endian Buffer (handles, some attributes). */
function ulong(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (Buffer.isBuffer(value)) {
    if (value.length === 8) return Number(value.readBigUInt64LE());
    if (value.length === 4) return value.readUInt32LE();
  }
  return undefined;
}

function bool(value: unknown): boolean {
  if (typeof value === "boolean") return value;
  if (Buffer.isBuffer(value)) return value.some((b) => b !== 0);
  return false;
}

/** A big-endian integer without leading zero bytes, as JWK wants it. */
function unsigned(buf: Buffer): Buffer {
  let i = 0;
  while (i < buf.length - 1 && buf[i] === 0) i++;
  return buf.subarray(i);
}

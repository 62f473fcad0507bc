/**
 * Typed errors. Every failure ghat can meet is one of these codes; each code is also a reason
 * of the Ready condition (see conditions.ts), so a user sees the same word in status, events
 * and metrics. Messages must never contain a token, a key or an Authorization header.
 */
export const errorCodes = [
  /** The spec cannot be acted on (bad reference, bad template, conflicting fields). */
  "InvalidSpec",
  /** The referenced GitHubApp / ClusterGitHubApp does not exist. */
  "AppNotFound",
  /** The private key Secret or its key is missing. */
  "PrivateKeyNotFound",
  /** The private key cannot be parsed (OpenSSH, garbage, wrong type). */
  "InvalidPrivateKey",
  /** GitHub rejected the App's JWT (401 bad JWT, 404 Integration not found, time claims). */
  "JWTRejected",
  /** The installation (by id, owner or repository) does not exist for this App. */
  "InstallationNotFound",
  /** The installation is suspended (403). */
  "InstallationSuspended",
  /** GitHub refused the requested permissions (422). */
  "PermissionsNotGranted",
  /** GitHub refused the requested repositories (422). */
  "RepositoriesNotGranted",
  /** Primary or secondary rate limit. */
  "RateLimited",
  /** 5xx, timeouts, connection errors. */
  "GitHubUnavailable",
  /** A Secret with the target name exists and is not managed by ghat. */
  "SecretConflict",
  /** A ClusterGitHubApp's policy does not allow this request. */
  "NotPermitted",
  /** The Kubernetes API failed in a way that should be retried. */
  "KubernetesError",
  /**
   * A remote answer broke a bound: a body over the size cap, a redirect, a token that does not
   * match GitHub's grammar, an `expires_at` outside the accepted window. Retried with backoff.
   */
  "InvalidResponse",
  /** ghat's own mint limits (per token, per App, per installation) hold the next mint back. */
  "Throttled",
  /** A cache or a reconcile step did not finish within its deadline. Retried with backoff. */
  "Timeout",
  /**
   * A bug in ghat (a programming error, not a classified failure): logged loudly, counted in
   * ghat_internal_errors_total, retried slowly; never reported as a Kubernetes problem.
   */
  "InternalError",
  /** A keyless signer (Vault, KMS, HSM) cannot be reached or is busy: network, 5xx, throttling. */
  "SignerUnavailable",
  /** A keyless signer refused: bad credentials, or the identity may not sign with the key. */
  "SignerDenied",
  /** A keyless signer has no such key or version, or the key is not an RSA signing key. */
  "SignerKeyNotFound",
] as const;

export type ErrorCode = (typeof errorCodes)[number];

/** Codes that clear by themselves (retry with backoff); the others wait for a change. */
const retryableCodes: ReadonlySet<ErrorCode> = new Set([
  "RateLimited",
  "GitHubUnavailable",
  "KubernetesError",
  "InvalidResponse",
  "Throttled",
  "Timeout",
  "SignerUnavailable",
]);

export interface GhatErrorOptions {
  /** HTTP status from GitHub or Kubernetes, when there was one. */
  status?: number;
  /** Earliest time (epoch ms) a retry makes sense: from retry-after or x-ratelimit-reset. */
  retryAt?: number;
  /**
   * `retryAt` is when the cause ends for certain (ghat's own interval between two mints of one
   * token): retry then, not later by backoff.
   */
  exact?: boolean;
  cause?: unknown;
}

export class GhatError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly status: number | undefined;
  readonly retryAt: number | undefined;
  readonly exact: boolean;

  constructor(code: ErrorCode, message: string, options: GhatErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GhatError";
    this.code = code;
    this.retryable = retryableCodes.has(code);
    this.status = options.status;
    this.retryAt = options.retryAt;
    this.exact = options.exact ?? false;
  }
}

/** A create-only Secret write found a Secret of that name: it was not changed. */
export class SecretExists extends GhatError {
  constructor(namespace: string, name: string) {
    super("SecretConflict", `Secret "${name}" already exists in namespace "${namespace}"`, { status: 409 });
  }
}

/** Normalises anything thrown into a GhatError without leaking its message verbatim. */
export function toGhatError(err: unknown, fallback: ErrorCode = "KubernetesError"): GhatError {
  if (err instanceof GhatError) return err;
  if (isProgrammingError(err)) {
    return new GhatError("InternalError", "ghat failed internally; the operator log has the details", {
      cause: err,
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new GhatError(fallback, redact(message), { cause: err });
}

/**
 * A bug rather than a failure of something outside (after controller-runtime's TerminalError
 * split): a TypeError, ReferenceError, RangeError or SyntaxError thrown by ghat's own code.
 * `fetch` reports network failures as a TypeError with a cause: those are not bugs.
 */
export function isProgrammingError(err: unknown): boolean {
  if (
    !(
      err instanceof TypeError ||
      err instanceof ReferenceError ||
      err instanceof RangeError ||
      err instanceof SyntaxError
    )
  )
    return false;
  return !(err.message === "fetch failed" || (err as { cause?: unknown }).cause !== undefined);
}

/**
 * Removes anything shaped like a GitHub token, a JWT, a PEM block (also lower-case or
 * base64-encoded) or an Authorization header. Used on every message that leaves the process
 * (status, events, logs). A secret is masked as a whole: `-`, `.` and `_` inside it are not
 * boundaries.
 */
export function redact(text: string): string {
  return (
    text
      .replace(pemBlock, "[REDACTED KEY]")
      .replace(base64Run, (run) => (isEncodedKey(run) ? "[REDACTED KEY]" : run))
      .replace(githubToken, "[REDACTED TOKEN]")
      .replace(jwt, "[REDACTED JWT]")
      // Whole words only: "githubapptokens.ghat.dev" is not a token.
      .replace(/\b(authorization["']?\s*[:=]\s*["']?(?:bearer |token )?)[^\s"',}]{8,}/gi, "$1[REDACTED]")
      .replace(/\b(token["']?\s*[:=]\s*["']?)[^\s"',}]{8,}/gi, "$1[REDACTED]")
      .replace(/\b((?:bearer|token) )(?=[^\s"',}]*[0-9_])[^\s"',}]{8,}/gi, "$1[REDACTED]")
  );
}

/** PEM armour in any case, up to its END line or, when cut off, the end of the text. */
const pemBlock = /-----\s*BEGIN[A-Z0-9 ]*-----[\s\S]*?(?:-----\s*END[A-Z0-9 ]*-----|$)/gi;

/**
 * GitHub tokens (ghs_, gho_, ghu_, ghp_, ghr_, github_pat_). GitHub's grammar is
 * `[A-Za-z0-9._-]{36,}` after the prefix; 20 keeps a margin for cut-off text.
 */
const githubToken = /(?<![A-Za-z0-9])(?:gh[opusr]_|github_pat_)[A-Za-z0-9._-]{20,}/g;

const jwt = /(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g;

/**
 * A run of standard base64, possibly wrapped over lines (real or escaped newlines). Either it
 * starts like "-----BEGIN" encoded, or it is long enough to hold a key and gets decoded.
 * Runs start at 7 characters (the length of "-----" encoded), so most words are not runs.
 */
const base64Run = /[A-Za-z0-9+/]{7,}={0,2}(?:(?:\r?\n|\\r\\n|\\n)[A-Za-z0-9+/]{4,}={0,2})*/g;

/** Base64 of "-----BEGIN" (and of "-----begin"): any alignment of text starting with armour. */
const encodedArmour = /^LS0tLS1(?:CRUdJTi|iZWdpbi)/;

/** Decoded base64 that is a key: PEM armour, or a long run of base64 text (a PEM body). */
const decodedKey = /-----\s*(?:BEGIN|END)|PRIVATE KEY|^[A-Za-z0-9+/=\r\n]{48,}$/i;

/** Shortest run worth decoding: the base64 of a PKCS#1 armour line (BEGIN RSA PRIVATE KEY) is 44. */
const minEncodedKey = 40;

function isEncodedKey(run: string): boolean {
  if (encodedArmour.test(run)) return true;
  const compact = run.replace(/\\r|\\n|\s|=/g, "");
  if (compact.length < minEncodedKey) return false;
  // Decoding a prefix is enough to recognise a key; the run may start at any of 4 alignments.
  const head = compact.slice(0, 480);
  for (let shift = 0; shift < 4; shift++) {
    const aligned = head.slice(shift, shift + Math.floor((head.length - shift) / 4) * 4);
    if (decodedKey.test(Buffer.from(aligned, "base64").toString("latin1"))) return true;
  }
  return false;
}

import { type ErrorCode, GhatError } from "../core/errors.ts";
import { quotable } from "../github/classify.ts";
import { type Fetch, readCapped } from "../github/client.ts";
import { createTransport } from "../github/transport.ts";

/** A signer's answers are small JSON documents; anything larger is refused unread. */
export const maxSignerResponseBytes = 256 * 1024;

export interface SignerHttpOptions {
  /** Which backend, named in messages ("Vault transit", "Azure Key Vault", …). */
  what: string;
  timeoutMs: number;
  caBundle?: string | undefined;
  /** For tests; node:https (github/transport.ts) by default. */
  fetch?: Fetch | undefined;
}

export interface SignerRequest {
  method: "GET" | "POST" | "PUT";
  url: string;
  headers?: Record<string, string>;
  /** Serialised as JSON. */
  json?: unknown;
  /** Sent as is (form bodies of OAuth token requests). */
  body?: string;
}

export interface SignerAnswer {
  status: number;
  headers: { get(name: string): string | null };
  /** The parsed JSON body; undefined when empty or not JSON. */
  json: unknown;
}

/**
 * HTTP for signers that speak a vendor's REST API (Vault transit, GCP KMS, Azure Key Vault):
 * one deadline per call, bodies capped at 256 KiB, redirects never followed (a redirect is an
 * error), and a transport failure or 5xx is `SignerUnavailable`. Status classification of
 * 4xx is the backend's: it knows which ones mean denied or not found.
 */
export function createSignerHttp(options: SignerHttpOptions) {
  const transport = createTransport({ caBundle: options.caBundle });
  const fetchFn: Fetch = options.fetch ?? transport.fetch;
  return {
    async request(req: SignerRequest): Promise<SignerAnswer> {
      const headers: Record<string, string> = { accept: "application/json", ...req.headers };
      let body: string | undefined = req.body;
      if (req.json !== undefined) {
        headers["content-type"] = "application/json";
        body = JSON.stringify(req.json);
      }
      let res: Awaited<ReturnType<Fetch>>;
      try {
        res = await fetchFn(req.url, {
          method: req.method,
          headers,
          ...(body === undefined ? {} : { body }),
          signal: AbortSignal.timeout(options.timeoutMs),
          redirect: "manual",
        });
      } catch (err) {
        throw new GhatError("SignerUnavailable", `${options.what} did not answer: ${transportReason(err)}`);
      }
      let text: string | undefined;
      try {
        text = await readCapped(res, maxSignerResponseBytes);
      } catch (err) {
        throw new GhatError(
          "SignerUnavailable",
          `${options.what}: reading the answer failed: ${transportReason(err)}`,
        );
      }
      if (text === undefined) {
        throw new GhatError(
          "SignerUnavailable",
          `${options.what} answered more than ${maxSignerResponseBytes} bytes`,
        );
      }
      if (res.status >= 300 && res.status < 400) {
        throw new GhatError(
          "SignerUnavailable",
          `${options.what} answered a redirect (${res.status}), which ghat does not follow`,
        );
      }
      let json: unknown;
      try {
        json = text === "" ? undefined : JSON.parse(text);
      } catch {
        json = undefined;
      }
      if (res.status >= 500 || res.status === 429) {
        throw new GhatError("SignerUnavailable", `${options.what} answered ${res.status}${detail(json)}`, {
          status: res.status,
        });
      }
      return { status: res.status, headers: res.headers, json };
    },
    async close(): Promise<void> {
      await transport.close();
    },
  };
}
export type SignerHttp = ReturnType<typeof createSignerHttp>;

/** A signer error for a 4xx answer, quoting the vendor's own message (bounded, redacted). */
export function signerError(code: ErrorCode, what: string, status: number, json: unknown): GhatError {
  return new GhatError(code, `${what} answered ${status}${detail(json)}`, { status });
}

/**
 * The vendor's error text in an answer, made safe to quote: Vault's `errors: [..]`,
 * Google's `error.message`, Azure's `error.message`, AWS's `message`.
 */
export function detail(json: unknown): string {
  if (json === null || typeof json !== "object") return "";
  const j = json as Record<string, unknown>;
  let text: string | undefined;
  if (Array.isArray(j.errors)) text = j.errors.filter((e) => typeof e === "string").join("; ");
  else if (
    j.error &&
    typeof j.error === "object" &&
    typeof (j.error as Record<string, unknown>).message === "string"
  )
    text = (j.error as Record<string, string>).message;
  else if (typeof j.error === "string") text = j.error;
  else if (typeof j.message === "string") text = j.message;
  if (!text) return "";
  const q = quotable(text);
  return q ? `: ${q}` : "";
}

/** Why a request failed on the wire, without echoing anything a server sent. */
export function transportReason(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === "TimeoutError" || err.name === "AbortError") return "timed out";
    const cause = (err as { cause?: { code?: unknown } }).cause;
    const code = typeof cause?.code === "string" ? cause.code : (err as { code?: unknown }).code;
    if (typeof code === "string" && /^[A-Z0-9_]{2,40}$/.test(code)) return code;
  }
  return "connection failed";
}

/**
 * `work`, or a SignerUnavailable with `message` after `ms`: credential libraries and native
 * PKCS#11 calls have deadlines of their own, or none. The work itself is not cancelled.
 */
export async function withDeadline<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new GhatError("SignerUnavailable", message)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

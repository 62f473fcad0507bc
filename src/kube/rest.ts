import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, STATUS_CODES } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { createSecureContext } from "node:tls";
import type { KubeConfig } from "@kubernetes/client-node";
import { observerOf, resourceOf } from "./instrument.ts";

/** A response of the API server outside 2xx: its status and body (a metav1.Status, usually). */
export class KubeApiError extends Error {
  readonly code: number;
  readonly body: string;

  constructor(code: number, body: string) {
    super(statusMessage(code, body));
    this.name = "KubeApiError";
    this.code = code;
    this.body = body;
  }
}

export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface KubeRequest {
  /** From the API root: /api/v1/namespaces/ns/secrets/name, /apis/ghat.dev/v1alpha1/… */
  path: string;
  query?: Record<string, string | undefined>;
  /** Sent as JSON. */
  body?: unknown;
  /** Of a PATCH: application/apply-patch+yaml, application/merge-patch+json, application/json-patch+json. */
  contentType?: string;
  accept?: string;
  signal?: AbortSignal;
  /**
   * The request fails when its connection is silent this long (default requestIdleMs); 0 for
   * none (watches, which keep their own idle timer).
   */
  idleMs?: number;
}

/** Patch content types (what client-node calls PatchStrategy). */
export const applyPatch = "application/apply-patch+yaml";
export const mergePatch = "application/merge-patch+json";
export const jsonPatch = "application/json-patch+json";

/** A request fails when the API server sends nothing for this long (client-go: no default). */
export const requestIdleMs = 60_000;
/**
 * An unused keep-alive connection is closed after this long. A burst opens one per concurrent
 * request; at idle, a rotation every few seconds keeps one or two of them.
 */
export const freeConnectionMs = 15_000;
/**
 * The KubeConfig's credentials are applied again after this long (client-go re-reads a token
 * file every minute), and at once after a 401. Applying them decodes the CA, certificate and
 * key, which cost more than the rest of a request's preparation.
 */
export const credentialsMs = 10_000;

/** The TLS material and headers client-node's KubeConfig puts on a request. */
interface Applied {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
  servername?: string;
  headers?: Record<string, string>;
}

/** KubeConfig's own way to apply a user's credentials (authenticators: token file, exec, OIDC). */
type ApplyOptions = { applyOptions(opts: Applied): Promise<void> };

const shared = new WeakMap<KubeConfig, KubeRest>();

/**
 * The few REST calls ghat makes, as plain JSON over node:https with the KubeConfig's
 * credentials: its TLS material and authenticators (token file, exec, OIDC), applied as
 * client-node does (again after `credentialsMs` or a 401), over one keep-alive agent per
 * distinct TLS material (a rotated client certificate gets a new one). Not client-node's
 * generated API classes, whose import loads every model of every API group, nor its undici
 * transport: ghat's bundle leaves both out (hack/bundle.ts), which is most of the memory an
 * idle operator used.
 *
 * A kubeconfig `proxy-url` is not supported: the operator talks to the API server of its own
 * cluster. Such a kubeconfig is refused with a message saying so.
 */
export class KubeRest {
  readonly kubeConfig: KubeConfig;
  #agent: { from: Applied; tls: Applied; agent: HttpAgent } | undefined;
  #credentials: { applied: Applied; until: number } | undefined;

  /** The one KubeRest (and so one connection pool) of this KubeConfig. */
  static for(kubeConfig: KubeConfig): KubeRest {
    const rest = shared.get(kubeConfig) ?? new KubeRest(kubeConfig);
    shared.set(kubeConfig, rest);
    return rest;
  }

  constructor(kubeConfig: KubeConfig) {
    this.kubeConfig = kubeConfig;
  }

  /** The request's URL, headers and agent, with the KubeConfig's credentials applied. */
  async prepare(req: KubeRequest) {
    const cluster = this.kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error("No active cluster in the kubeconfig");
    if (cluster.proxyUrl) {
      throw new Error(
        `the kubeconfig's cluster ${cluster.name} names a proxy-url, which ghat does not support: ` +
          "run it in the cluster, or with a kubeconfig that reaches the API server directly",
      );
    }
    const url = new URL(cluster.server + req.path);
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const applied = await this.#applied();
    const headers: Record<string, string> = {
      ...applied.headers,
      "user-agent": "ghat",
      accept: req.accept ?? "application/json",
    };
    const user = this.kubeConfig.getCurrentUser();
    if (user?.username) {
      headers.authorization = `Basic ${Buffer.from(`${user.username}:${user.password ?? ""}`).toString("base64")}`;
    }
    if (req.body !== undefined) headers["content-type"] = req.contentType ?? "application/json";
    if (url.protocol === "http:" && !cluster.skipTLSVerify) {
      throw new Error("HTTP protocol is not allowed when skipTLSVerify is not set or false");
    }
    return { url, headers, agent: this.#agentFor(url.protocol === "https:", applied) };
  }

  /** The KubeConfig's credentials, applied at most every `credentialsMs`. */
  async #applied(): Promise<Applied> {
    const now = Date.now();
    const cached = this.#credentials;
    if (cached && now < cached.until && now >= cached.until - credentialsMs) return cached.applied;
    const applied: Applied = {};
    await (this.kubeConfig as unknown as ApplyOptions).applyOptions(applied);
    this.#credentials = { applied, until: now + credentialsMs };
    return applied;
  }

  /** The agent of this TLS material: the current one, or a new one (the old one closes later). */
  #agentFor(secure: boolean, applied: Applied): HttpAgent {
    const current = this.#agent;
    // The same credentials as the last request (they are applied again every few seconds).
    if (current?.from === applied) return current.agent;
    const tls: Applied = {};
    for (const k of ["ca", "cert", "key", "rejectUnauthorized", "servername"] as const) {
      if (applied[k] !== undefined) Object.assign(tls, { [k]: applied[k] });
    }
    if (current && sameTls(current.tls, tls)) {
      current.from = applied;
      return current.agent;
    }
    const options = { keepAlive: true, keepAliveMsecs: 30_000, timeout: freeConnectionMs };
    // One TLS context for all its connections: otherwise each parses the CA and key again.
    const { ca, cert, key, ...verify } = tls;
    const agent = secure
      ? new HttpsAgent({ ...options, ...verify, secureContext: createSecureContext({ ca, cert, key }) })
      : new HttpAgent(options);
    this.#agent = { from: applied, tls, agent };
    // Requests and watches on the old connections finish or are reopened on the new agent.
    if (current) setTimeout(() => current.agent.destroy(), 60_000).unref();
    return agent;
  }

  /** Sends a request; resolves with the answer once its headers came (any status). */
  async open(method: Method, req: KubeRequest): Promise<IncomingMessage> {
    const { url, headers, agent } = await this.prepare(req);
    const body = req.body === undefined ? undefined : JSON.stringify(req.body);
    if (body !== undefined) headers["content-length"] = String(Buffer.byteLength(body));
    const { signal } = req;
    const idleMs = req.idleMs ?? requestIdleMs;
    return await new Promise<IncomingMessage>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const send = url.protocol === "https:" ? httpsRequest : httpRequest;
      const request = send(url, { method, headers, agent });
      let abort = (): void => void request.destroy(signal?.reason as Error);
      const onAbort = () => abort();
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = () => signal?.removeEventListener("abort", onAbort);
      if (idleMs > 0) {
        request.setTimeout(idleMs, () =>
          request.destroy(new Error(`no answer from the API server within ${Math.round(idleMs / 1000)}s`)),
        );
      }
      request.once("error", (err) => {
        done();
        reject(signal?.aborted ? signal.reason : err);
      });
      request.once("response", (res) => {
        // Credentials that expired (a rotated token file, an exec plugin's token): apply them again.
        if (res.statusCode === 401) this.#credentials = undefined;
        abort = () => void res.destroy(signal?.reason as Error);
        res.once("close", done);
        resolve(res);
      });
      request.end(body);
    });
  }

  /** One request; the parsed JSON body of a 2xx answer, a KubeApiError otherwise. */
  async request<T = unknown>(method: Method, req: KubeRequest): Promise<T> {
    observerOf(this.kubeConfig)?.(method.toLowerCase(), resourceOf(req.path));
    const res = await this.open(method, req);
    const text = await readBounded(res, `${method} ${req.path}`);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) throw new KubeApiError(status, text);
    return (text === "" ? undefined : JSON.parse(text)) as T;
  }

  get<T = unknown>(path: string, query?: KubeRequest["query"]): Promise<T> {
    return this.request<T>("GET", { path, ...(query ? { query } : {}) });
  }

  post<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request<T>("POST", { path, body });
  }

  put<T = unknown>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PUT", { path, body });
  }

  patch<T = unknown>(
    path: string,
    contentType: string,
    body: unknown,
    query?: KubeRequest["query"],
  ): Promise<T> {
    return this.request<T>("PATCH", { path, body, contentType, ...(query ? { query } : {}) });
  }

  delete(path: string): Promise<unknown> {
    return this.request("DELETE", { path });
  }
}

/**
 * The largest answer ghat reads from the API server: a list page of 500 objects, or a
 * namespace's workloads, fits many times over; a larger one is refused before it is held.
 */
export const maxResponseBytes = 64 * 2 ** 20;

/** A response body as text, refused (and the stream destroyed) once it passes `max` bytes. */
export async function readBounded(
  body: AsyncIterable<Buffer> & { destroy(): unknown },
  what: string,
  max = maxResponseBytes,
): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    bytes += chunk.length;
    if (bytes > max) {
      body.destroy();
      throw new Error(`${what}: the API server's answer is larger than ${Math.round(max / 2 ** 20)} MiB`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function sameTls(a: Applied, b: Applied): boolean {
  const same = (x: unknown, y: unknown) => (Buffer.isBuffer(x) && Buffer.isBuffer(y) ? x.equals(y) : x === y);
  return (["ca", "cert", "key", "rejectUnauthorized", "servername"] as const).every((k) => same(a[k], b[k]));
}

/** A collection or object path: core group for "v1", /apis/<group>/<version> otherwise. */
export function pathOf(
  apiVersion: string,
  plural: string,
  namespace?: string,
  name?: string,
  subresource?: string,
): string {
  const root = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const ns = namespace ? `/namespaces/${encodeURIComponent(namespace)}` : "";
  const obj = name ? `/${encodeURIComponent(name)}` : "";
  return `${root}${ns}/${plural}${obj}${name && subresource ? `/${subresource}` : ""}`;
}

/** The API server's message of an error body (a metav1.Status), else the status text. */
function statusMessage(code: number, body: string): string {
  let message = "";
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === "string") message = parsed.message;
  } catch {
    message = body.slice(0, 300);
  }
  return `HTTP ${code}${message ? `: ${message}` : ` ${STATUS_CODES[code] ?? ""}`.trimEnd()}`;
}

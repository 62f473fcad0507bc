import { STATUS_CODES } from "node:http";
import { HttpMethod, type KubeConfig, RequestContext } from "@kubernetes/client-node";
import { request } from "undici";
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
}

/** Patch content types (what client-node calls PatchStrategy). */
export const applyPatch = "application/apply-patch+yaml";
export const mergePatch = "application/merge-patch+json";
export const jsonPatch = "application/json-patch+json";

/**
 * The few REST calls ghat makes, as plain JSON over the KubeConfig's transport and
 * credentials (client-node's authenticators, TLS options and connection pool: see
 * shareConnections). Not client-node's generated API classes: importing those loads every
 * model of every API group and runs each object through its ObjectSerializer; ghat's bundle
 * leaves them out (hack/bundle.ts), which is most of the memory an idle operator used.
 */
export class KubeRest {
  readonly kubeConfig: KubeConfig;

  constructor(kubeConfig: KubeConfig) {
    this.kubeConfig = kubeConfig;
  }

  /** The request's URL and headers, with the KubeConfig's credentials applied. */
  async prepare(method: Method, req: KubeRequest) {
    const cluster = this.kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error("No active cluster in the kubeconfig");
    const url = new URL(cluster.server + req.path);
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const ctx = new RequestContext(url.toString(), HttpMethod[method]);
    await this.kubeConfig.applySecurityAuthentication(ctx);
    ctx.setHeaderParam("User-Agent", "ghat");
    ctx.setHeaderParam("Accept", req.accept ?? "application/json");
    if (req.body !== undefined) ctx.setHeaderParam("Content-Type", req.contentType ?? "application/json");
    return { url, headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher() };
  }

  /** One request; the parsed JSON body of a 2xx answer, a KubeApiError otherwise. */
  async request<T = unknown>(method: Method, req: KubeRequest): Promise<T> {
    const { url, headers, dispatcher } = await this.prepare(method, req);
    observerOf(this.kubeConfig)?.(method.toLowerCase(), resourceOf(url.toString()));
    // undici's request(), not fetch(): the same connection pool without WHATWG Request,
    // Response and stream objects per call, which were a tenth of a burst's CPU.
    const res = await request(url, {
      method,
      headers,
      dispatcher: dispatcher as never,
      ...(req.body === undefined ? {} : { body: JSON.stringify(req.body) }),
      ...(req.signal ? { signal: req.signal } : {}),
    });
    const text = await res.body.text();
    if (res.statusCode < 200 || res.statusCode > 299) throw new KubeApiError(res.statusCode, text);
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

import { X509Certificate } from "node:crypto";
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { createSecureContext, getCACertificates } from "node:tls";
import { GhatError } from "../core/errors.ts";
import type { Fetch, FetchInit, FetchResponse } from "./client.ts";

export interface TransportOptions {
  /** PEM certificates trusted in addition to Node's default CAs (Enterprise Server on a private CA). */
  caBundle?: string | undefined;
  /** `http://`, `https://` or `socks5://` proxy URL, credentials allowed (`http://user:pass@host:3128`). */
  proxy?: string | undefined;
}

/** How ghat reaches one HTTP endpoint (GitHub, a signer): a `fetch` and what closes its connections. */
export interface Transport {
  fetch: Fetch;
  close(): Promise<void>;
}

/**
 * The transport for one endpoint. Without a proxy it is Node's own HTTP client (node:http,
 * node:https) over keep-alive agents: the agents every such endpoint shares, or one trusting
 * the CA bundle. With a proxy it is undici's `fetch` through a `ProxyAgent` (a CONNECT tunnel
 * for https, trusting the bundle both for the endpoint and for an https proxy); undici is
 * imported only then, so an operator without proxies never loads it (about 15 MiB).
 *
 * Redirects are never followed (node:http does not; undici is told `redirect: "manual"`).
 * The options are checked here, not at the first request: a bad CA bundle or proxy URL is an
 * InvalidSpec at once.
 */
export function createTransport(options: TransportOptions): Transport {
  const ca = options.caBundle?.trim() ? trustedCertificates(options.caBundle) : undefined;
  const proxy = options.proxy?.trim() ? checkedProxy(options.proxy.trim()) : undefined;
  if (proxy) return proxiedTransport(proxy, ca);
  if (!ca) return { fetch: nodeFetch(sharedAgents()), close: async () => undefined };
  // One TLS context for all its connections: otherwise each parses ~150 certificates again.
  const https = new HttpsAgent({ ...agentOptions, secureContext: createSecureContext({ ca }) });
  const agents = { http: sharedAgents().http, https };
  return {
    fetch: nodeFetch(agents),
    close: async () => agents.https.destroy(),
  };
}

/** Keep-alive, and an unused connection closed after 15 s (undici's default was 4 s). */
const agentOptions = { keepAlive: true, timeout: 15_000 };
let shared: { http: HttpAgent; https: HttpsAgent } | undefined;

/** Keep-alive agents for endpoints with Node's default CAs and no proxy. */
function sharedAgents(): { http: HttpAgent; https: HttpsAgent } {
  shared ??= { http: new HttpAgent(agentOptions), https: new HttpsAgent(agentOptions) };
  return shared;
}

/**
 * `fetch` as the clients use it, over node:http(s): the answer's body is node's stream (read
 * and cut by readCapped); the signal aborts the request and, once headers came, the body, with
 * the signal's reason (a TimeoutError, as `fetch` rejects).
 */
export function nodeFetch(agents: { http: HttpAgent; https: HttpsAgent }): Fetch {
  return (url: string, init: FetchInit) =>
    new Promise<FetchResponse>((resolve, reject) => {
      const target = new URL(url);
      const secure = target.protocol === "https:";
      if (!secure && target.protocol !== "http:") {
        reject(new TypeError(`unsupported protocol ${target.protocol}`));
        return;
      }
      const { signal } = init;
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      const req = (secure ? httpsRequest : httpRequest)(target, {
        method: init.method,
        headers:
          init.body === undefined
            ? init.headers
            : { ...init.headers, "content-length": Buffer.byteLength(init.body) },
        agent: secure ? agents.https : agents.http,
      });
      // Before the answer the request is aborted; after it, the body (the same reason either way).
      let abort = (): void => void req.destroy(signal.reason as Error);
      const onAbort = () => abort();
      signal.addEventListener("abort", onAbort, { once: true });
      req.once("error", (err) => {
        signal.removeEventListener("abort", onAbort);
        reject(signal.aborted ? signal.reason : err);
      });
      req.once("response", (res) => {
        abort = () => void res.destroy(signal.reason as Error);
        res.once("close", () => signal.removeEventListener("abort", onAbort));
        resolve({
          status: res.statusCode ?? 0,
          headers: headersOf(res.headers),
          body: res,
          text: async () => {
            const chunks: Buffer[] = [];
            for await (const chunk of res) chunks.push(chunk as Buffer);
            return Buffer.concat(chunks).toString("utf8");
          },
        });
      });
      req.end(init.body);
    });
}

/** `Headers.get` over node's header object: repeated headers joined with ", ". */
function headersOf(headers: IncomingHttpHeaders): FetchResponse["headers"] {
  return {
    get(name: string): string | null {
      const v = headers[name.toLowerCase()];
      if (v === undefined) return null;
      return Array.isArray(v) ? v.join(", ") : v;
    },
  };
}

type Undici = typeof import("undici");

/** undici's fetch through a ProxyAgent, both created at the first request. */
function proxiedTransport(uri: string, ca: string[] | undefined): Transport {
  let loaded: Promise<{ undici: Undici; dispatcher: InstanceType<Undici["ProxyAgent"]> }> | undefined;
  const load = () => {
    loaded ??= import("undici").then((undici) => ({
      undici,
      dispatcher: new undici.ProxyAgent({ uri, ...(ca ? { requestTls: { ca }, proxyTls: { ca } } : {}) }),
    }));
    return loaded;
  };
  return {
    async fetch(url, init) {
      const { undici, dispatcher } = await load();
      return undici.fetch(url, { ...init, dispatcher });
    },
    async close() {
      if (loaded) await (await loaded).dispatcher.close();
    },
  };
}

function checkedProxy(uri: string): string {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new GhatError("InvalidSpec", "the proxy is not a URL (expected http://host:port)");
  }
  if (!["http:", "https:", "socks5:", "socks:"].includes(url.protocol)) {
    throw new GhatError(
      "InvalidSpec",
      `the proxy URL scheme ${url.protocol} is not supported (expected http, https or socks5)`,
    );
  }
  return uri;
}

/**
 * Node's default CAs (bundled, plus NODE_EXTRA_CA_CERTS and the system store when enabled)
 * and the bundle's certificates: a `ca` option replaces the defaults, so they are added back.
 * A bundle that is not PEM certificates is refused here, not at the first TLS handshake.
 */
export function trustedCertificates(caBundle: string): string[] {
  const blocks = caBundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    throw new GhatError("InvalidSpec", "the CA bundle holds no PEM certificate (BEGIN CERTIFICATE)");
  }
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch {
      throw new GhatError("InvalidSpec", `certificate ${i + 1} of the CA bundle could not be parsed`);
    }
  });
  return [...getCACertificates("default"), ...blocks];
}

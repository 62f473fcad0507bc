import { X509Certificate } from "node:crypto";
import { getCACertificates } from "node:tls";
import { Agent, type Dispatcher, ProxyAgent } from "undici";
import { GhatError } from "../core/errors.ts";

export interface DispatcherOptions {
  /** PEM certificates trusted in addition to Node's default CAs (Enterprise Server on a private CA). */
  caBundle?: string | undefined;
  /** `http://`, `https://` or `socks5://` proxy URL, credentials allowed (`http://user:pass@host:3128`). */
  proxy?: string | undefined;
}

/**
 * The undici dispatcher for one GitHub endpoint: undefined (undici's global one) when neither
 * a CA bundle nor a proxy is set; an `Agent` trusting the bundle; or a `ProxyAgent` (CONNECT
 * tunnel for https) trusting the bundle both for GitHub and for an https proxy.
 */
export function createDispatcher(options: DispatcherOptions): Dispatcher | undefined {
  const ca = options.caBundle?.trim() ? trustedCertificates(options.caBundle) : undefined;
  if (options.proxy?.trim()) {
    const uri = options.proxy.trim();
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
    return new ProxyAgent({ uri, ...(ca ? { requestTls: { ca }, proxyTls: { ca } } : {}) });
  }
  return ca ? new Agent({ connect: { ca } }) : undefined;
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

import { createHash } from "node:crypto";
import {
  type ApiType,
  createConfiguration,
  type KubeConfig,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
} from "@kubernetes/client-node";

/** verb (lowercase HTTP method) and resource ("secrets", "githubapptokens/status", …). */
export type RequestObserver = (verb: string, resource: string) => void;

const userAgent = "ghat";

const observers = new WeakMap<KubeConfig, RequestObserver>();

/** The observer `instrument` gave this KubeConfig, for requests made without an API client (informers). */
export function observerOf(kc: KubeConfig): RequestObserver | undefined {
  return observers.get(kc);
}

/**
 * Makes every API client built from `kc` report its requests (not watch streams) to
 * `observe`: ghat_kube_requests_total, and the benchmark's writes-per-rotation figures.
 * Same construction as KubeConfig.makeApiClient, plus one middleware. Also shares one
 * connection pool: see shareConnections.
 */
export function instrument(kc: KubeConfig, observe: RequestObserver): KubeConfig {
  shareConnections(kc);
  observers.set(kc, observe);
  kc.makeApiClient = <T extends ApiType>(
    type: new (config: ReturnType<typeof createConfiguration>) => T,
  ): T => {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("No active cluster!");
    const config = createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: kc },
      promiseMiddleware: [
        {
          pre: async (ctx: RequestContext) => {
            ctx.setHeaderParam("User-Agent", userAgent);
            observe(String(ctx.getHttpMethod()).toLowerCase(), resourceOf(ctx.getUrl()));
            return ctx;
          },
          post: async (ctx: ResponseContext) => ctx,
        },
      ],
    });
    return new type(config);
  };
  return kc;
}

/** The resource (and subresource) of a Kubernetes API URL. */
export function resourceOf(url: string): string {
  const path = new URL(url, "https://_").pathname.split("/").filter(Boolean);
  // /api/v1/... or /apis/<group>/<version>/...
  let rest = path[0] === "api" ? path.slice(2) : path.slice(3);
  if (rest[0] === "namespaces" && rest.length > 2) rest = rest.slice(2);
  const [resource = "", , sub] = rest;
  return sub ? `${resource}/${sub}` : resource;
}

type CreateDispatcher = (cluster: unknown, agentOptions: unknown) => { close(): Promise<void> } | undefined;

/**
 * client-node 2.0 builds a new undici Agent for every request (KubeConfig.createDispatcher),
 * so every request opens a new TLS connection that stays open: measured here, 1,000 tokens
 * left ~1,000 HTTP/2 sessions, +500 MB RSS and a TLS handshake per request on both sides.
 * This keeps one dispatcher per distinct TLS configuration (a rotated client certificate
 * gets a new one; the old one is closed once its requests finish).
 */
export function shareConnections(kc: KubeConfig, recheckMs = 10_000, now: () => number = Date.now): void {
  const target = kc as unknown as { createDispatcher: CreateDispatcher };
  const original = target.createDispatcher.bind(kc);
  let current: { key: string; dispatcher: ReturnType<CreateDispatcher>; checkedAt: number } | undefined;
  target.createDispatcher = (cluster, agentOptions) => {
    // Comparing TLS options costs a serialization and a hash of the certificates: done at
    // most every `recheckMs` (a rotated certificate is picked up within that), not per request.
    if (current && now() - current.checkedAt < recheckMs) return current.dispatcher;
    const options = kc.createDispatcherOptions(
      cluster as Parameters<KubeConfig["createDispatcherOptions"]>[0],
      agentOptions as Parameters<KubeConfig["createDispatcherOptions"]>[1],
    );
    const key = createHash("sha256").update(JSON.stringify(options)).digest("hex");
    if (current?.key !== key) {
      const old = current?.dispatcher;
      current = { key, dispatcher: original(cluster, agentOptions), checkedAt: now() };
      old?.close().catch(() => undefined);
    } else {
      current.checkedAt = now();
    }
    return current.dispatcher;
  };
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { KubeConfig } from "@kubernetes/client-node";
import { createLogger } from "../../../src/log.ts";

export const log = createLogger({
  level: "silent",
  destination: new Writable({ write: (_c, _e, cb) => cb() }),
});

export interface Seen {
  path: string;
  query: URLSearchParams;
  accept: string | undefined;
}

/** A plain-HTTP stand-in for the API server: each request goes to `handle`, and is recorded. */
export async function fakeApi(
  handle: (req: IncomingMessage, res: ServerResponse, seen: Seen) => void,
): Promise<{
  kubeConfig: KubeConfig;
  requests: Seen[];
  close(): Promise<void>;
}> {
  const requests: Seen[] = [];
  const open = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const seen = { path: url.pathname, query: url.searchParams, accept: req.headers.accept };
    requests.push(seen);
    open.add(res);
    res.on("close", () => open.delete(res));
    handle(req, res, seen);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [
      {
        name: "c",
        server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  return {
    kubeConfig,
    requests,
    close: async () => {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

export function secretMeta(name: string, rv: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: "meta.k8s.io/v1",
    kind: "PartialObjectMetadata",
    metadata: { name, namespace: "ns", resourceVersion: rv, ...extra },
  };
}

/** Opens a watch response and returns a function that writes one event line. */
export function openWatch(res: ServerResponse): (event: unknown) => void {
  res.writeHead(200, { "content-type": "application/json" });
  res.flushHeaders();
  return (event) => res.write(`${JSON.stringify(event)}\n`);
}

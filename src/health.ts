import { createServer, type Server } from "node:http";

export interface HealthChecks {
  /** Process is alive and its loop is turning. */
  live: () => boolean;
  /** Informers synced (and, with leader election, either leading or standing by). */
  ready: () => boolean;
}

/** /healthz and /readyz for the kubelet's probes. */
export function startHealthServer(port: number, host: string, checks: HealthChecks): Promise<Server> {
  const server = createServer((req, res) => {
    const ok = req.url === "/healthz" ? checks.live() : req.url === "/readyz" ? checks.ready() : undefined;
    if (ok === undefined) {
      res.writeHead(404).end("not found\n");
      return;
    }
    res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "not ready\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

import { createServer, type Server } from "node:http";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { revision, version } from "./version.ts";

/**
 * ghat's Prometheus metrics. Labels never carry a token, a key or a message: only
 * namespace/name, routes, status codes, reasons and installation ids.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly tokenExpiry = new Gauge({
    name: "ghat_token_expiry_timestamp_seconds",
    help: "When the token currently in the Secrets expires (GitHub's expires_at), per GitHubAppToken.",
    labelNames: ["namespace", "name"],
    registers: [this.registry],
  });
  readonly refreshes = new Counter({
    name: "ghat_token_refreshes_total",
    help: "Mint attempts by result: success, shared (took the token minted for the same scope) or the error reason.",
    labelNames: ["result"],
    registers: [this.registry],
  });
  readonly kubeRequests = new Counter({
    name: "ghat_kube_requests_total",
    help: "Requests to the Kubernetes API by verb (get, list for cache lists, post, patch, put, delete; watch streams excluded) and resource.",
    labelNames: ["verb", "resource"],
    registers: [this.registry],
  });
  readonly githubRequests = new Counter({
    name: "ghat_github_requests_total",
    help: "Requests to GitHub by route (operation id) and HTTP status (0: no response).",
    labelNames: ["route", "status"],
    registers: [this.registry],
  });
  readonly githubDuration = new Histogram({
    name: "ghat_github_request_duration_seconds",
    help: "Latency of GitHub requests by route.",
    labelNames: ["route"],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly rateLimitRemaining = new Gauge({
    name: "ghat_github_rate_limit_remaining",
    help: "x-ratelimit-remaining last seen per installation.",
    labelNames: ["installation"],
    registers: [this.registry],
  });
  readonly rateLimitLimit = new Gauge({
    name: "ghat_github_rate_limit_limit",
    help: "x-ratelimit-limit last seen per installation.",
    labelNames: ["installation"],
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: "ghat_reconcile_duration_seconds",
    help: "Time to reconcile one GitHubAppToken.",
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: "ghat_workqueue_depth",
    help: "Keys waiting in the work queue.",
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: "ghat_leader",
    help: "1 while this replica holds the leader Lease.",
    registers: [this.registry],
  });
  readonly revocations = new Counter({
    name: "ghat_token_revocations_total",
    help: "Token revocations by result.",
    labelNames: ["result"],
    registers: [this.registry],
  });

  readonly signerRequests = new Counter({
    name: "ghat_signer_requests_total",
    help: "Signatures asked of keyless signers (Vault, KMS, HSM) by backend and result (ok or the error reason).",
    labelNames: ["backend", "result"],
    registers: [this.registry],
  });
  readonly signerDuration = new Histogram({
    name: "ghat_signer_request_duration_seconds",
    help: "Latency of keyless signatures by backend.",
    labelNames: ["backend"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly appChecks = new Counter({
    name: "ghat_app_checks_total",
    help: "Checks of GitHubApps and ClusterGitHubApps (key or signer, and GET /app) by kind and result (Verified or the error reason).",
    labelNames: ["kind", "result"],
    registers: [this.registry],
  });

  readonly mintsThrottled = new Counter({
    name: "ghat_mints_throttled_total",
    help: "Mints held back by ghat's own limits, by limit (token-interval, app, installation).",
    labelNames: ["limit"],
    registers: [this.registry],
  });
  readonly internalErrors = new Counter({
    name: "ghat_internal_errors_total",
    help: "Reconciles that failed on a bug in ghat (logged at error level with the details).",
    registers: [this.registry],
  });
  readonly reconcileOverruns = new Counter({
    name: "ghat_reconcile_overruns_total",
    help: "Reconciles that overran --reconcile-timeout; their worker was given back.",
    registers: [this.registry],
  });

  /** Always 1; the labels say which build runs (join on it to tell versions apart in a rollout). */
  readonly buildInfo = new Gauge({
    name: "ghat_build_info",
    help: "1, labelled with the version and source revision of the running ghat.",
    labelNames: ["version", "revision"],
    registers: [this.registry],
  });

  constructor(build: { version: string; revision: string } = { version, revision: revision() }) {
    // Node's and the process's metrics under their standard names (process_cpu_seconds_total,
    // process_resident_memory_bytes, nodejs_heap_size_used_bytes, …), unprefixed, so that stock
    // Node.js dashboards and alerts work; the job/pod labels of the scrape say they are ghat's.
    // The event-loop delay histogram samples once a second, not every 10 ms (prom-client's
    // default): 100 wake-ups a second were most of an idle operator's CPU (bench/results.md).
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 1000 });
    this.buildInfo.set(build, 1);
  }
}

export function startMetricsServer(metrics: Metrics, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end("not found\n");
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      () => res.writeHead(500).end("metrics failed\n"),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

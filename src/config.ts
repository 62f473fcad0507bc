import { parseArgs } from "node:util";
import { z } from "zod";
import { durationString, parseDuration } from "./api/meta.ts";

const schema = z.object({
  kubeconfig: z.string().optional().describe("Path to a kubeconfig; in-cluster config when unset"),
  namespaces: z
    .string()
    .default("")
    .transform((s) =>
      s
        .split(",")
        .map((n) => n.trim())
        .filter(Boolean),
    )
    .describe("Comma-separated namespaces to watch; all when empty"),
  operatorNamespace: z
    .string()
    .min(1)
    .default("ghat-system")
    .describe("Namespace of ClusterGitHubApp key Secrets"),
  workers: z.coerce.number().int().min(1).max(64).default(4).describe("Concurrent reconciles"),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error"]).default("info"),
  logFormat: z.enum(["json", "pretty"]).default("json"),
  healthPort: z.coerce
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(8081)
    .describe("Port of /healthz and /readyz (0: random)"),
  metricsPort: z.coerce
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(8080)
    .describe("Port of /metrics (0: random)"),
  bindAddress: z.string().default("0.0.0.0"),
  revokeSupersededAfter: durationString
    .default("5m")
    .describe("Grace before a superseded token is revoked (0s: never)"),
  terminalRetry: durationString
    .default("15m")
    .describe("Retry interval for errors only GitHub-side changes fix"),
  workloads: z
    .enum(["true", "false"])
    .default("true")
    .transform((v) => v === "true")
    .describe("Find workloads reading Secrets via env vars and do opt-in restarts (needs the RBAC)"),
  restartGap: durationString
    .default("5s")
    .describe("At least this long between two workload restarts, operator-wide"),
  githubTimeout: durationString.default("10s").describe("Timeout of one GitHub request"),
  secondaryRateLimitWait: durationString
    .default("1m")
    .describe("Wait after a secondary rate limit that names no retry-after (GitHub asks for at least 1m)"),
  minTokenLifetime: durationString
    .default("1m")
    .describe("Shortest token lifetime accepted from a server; an expires_at outside this to 24h is refused"),
  minMintInterval: durationString
    .default("60s")
    .describe(
      "Least time between two mints of one GitHubAppToken (a mint loop cannot spend the shared rate limit)",
    ),
  appMintRate: z.coerce
    .number()
    .positive()
    .default(120)
    .describe(
      "Mints per minute one namespace may make with one App (GitHub allows about 180 a minute per App)",
    ),
  appMintBurst: z.coerce
    .number()
    .int()
    .min(1)
    .default(200)
    .describe("Mints one namespace may make at once with one App"),
  installationMintRate: z.coerce
    .number()
    .positive()
    .default(60)
    .describe("Mints per minute one namespace may make for one installation"),
  installationMintBurst: z.coerce
    .number()
    .int()
    .min(1)
    .default(100)
    .describe("Mints one namespace may make at once for one installation"),
  reconcileTimeout: durationString
    .default("60s")
    .describe("A reconcile running longer gives its worker back (one stuck tenant cannot hold the workers)"),
  shutdownTimeout: durationString.default("20s").describe("Longest wait for in-flight reconciles on SIGTERM"),
  leaderElect: z
    .enum(["true", "false"])
    .default("false")
    .transform((v) => v === "true")
    .describe("Only the holder of a Lease reconciles (set for more than one replica)"),
  leaderElectionNamespace: z
    .string()
    .optional()
    .describe("Namespace of the Lease (default: operator namespace)"),
  leaderElectionId: z.string().default("ghat-leader").describe("Name of the Lease"),
  leaseDuration: durationString.default("15s"),
  renewDeadline: durationString.default("10s"),
  retryPeriod: durationString.default("2s"),
});

export type Config = z.output<typeof schema> & {
  revokeSupersededAfterMs: number;
  terminalRetryMs: number;
  restartGapMs: number;
  githubTimeoutMs: number;
  secondaryRateLimitWaitMs: number;
  minMintIntervalMs: number;
  minTokenLifetimeMs: number;
  reconcileTimeoutMs: number;
  shutdownTimeoutMs: number;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
};

const flagToEnv = (flag: string) => `GHAT_${flag.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

export function usage(): string {
  const lines = Object.entries(schema.shape).map(([key, field]) => {
    const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    return `  --${flag.padEnd(26)} ${field.description ?? ""} (env ${flagToEnv(key)})`;
  });
  return `Usage: ghat run [flags]\n${lines.join("\n")}\n`;
}

/** Flags win over GHAT_* environment variables; KUBECONFIG and POD_NAMESPACE are honoured. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const options = Object.fromEntries(
    Object.keys(schema.shape).map((k) => [
      k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`),
      { type: "string" as const },
    ]),
  );
  const { values } = parseArgs({
    args: argv,
    options: { ...options, help: { type: "boolean" } },
    strict: true,
  });
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(schema.shape)) {
    const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    const v = (values as Record<string, string | boolean | undefined>)[flag] ?? env[flagToEnv(key)];
    if (v !== undefined) raw[key] = v;
  }
  raw.kubeconfig ??= env.KUBECONFIG || undefined;
  raw.operatorNamespace ??= env.POD_NAMESPACE || undefined;
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new Error(`invalid configuration:\n${z.prettifyError(parsed.error)}`);
  return {
    ...parsed.data,
    revokeSupersededAfterMs: parseDuration(parsed.data.revokeSupersededAfter.replace(/^0$/, "0s")),
    terminalRetryMs: parseDuration(parsed.data.terminalRetry),
    restartGapMs: parseDuration(parsed.data.restartGap),
    githubTimeoutMs: parseDuration(parsed.data.githubTimeout),
    secondaryRateLimitWaitMs: parseDuration(parsed.data.secondaryRateLimitWait),
    minMintIntervalMs: parseDuration(parsed.data.minMintInterval.replace(/^0$/, "0s")),
    minTokenLifetimeMs: parseDuration(parsed.data.minTokenLifetime),
    reconcileTimeoutMs: parseDuration(parsed.data.reconcileTimeout),
    shutdownTimeoutMs: parseDuration(parsed.data.shutdownTimeout),
    leaseDurationMs: parseDuration(parsed.data.leaseDuration),
    renewDeadlineMs: parseDuration(parsed.data.renewDeadline),
    retryPeriodMs: parseDuration(parsed.data.retryPeriod),
  };
}

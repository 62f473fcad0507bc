import { existsSync } from "node:fs";
import { hostname } from "node:os";
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
  logLevel: z
    .enum(["trace", "debug", "info", "warn", "error"])
    .default("info")
    .describe("Least level logged"),
  logFormat: z
    .enum(["json", "pretty"])
    .default("json")
    .describe("Log line format: one JSON object a line, or pretty for people"),
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
  bindAddress: z.string().default("0.0.0.0").describe("Address the health and metrics servers listen on"),
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
  appJwtReuse: durationString
    .default("60s")
    .describe(
      "How long a signed App JWT is reused: how often a keyless signer is asked per App (at most 5m)",
    ),
  appCheckInterval: durationString
    .default("5m")
    .describe("How often GitHub is asked again whether it accepts each App's JWT (GET /app) for App status"),
  pkcs11Module: z
    .string()
    .default("")
    .transform((s) =>
      s
        .split(",")
        .map((n) => n.trim())
        .filter(Boolean),
    )
    .describe(
      "Comma-separated PKCS#11 modules (absolute .so paths) a pkcs11 signer may load; none when empty",
    ),
  namespacedAmbientSigners: z
    .enum(["true", "false"])
    .default("false")
    .transform((v) => v === "true")
    .describe(
      "Let namespaced GitHubApps use signers that sign with the operator's own identity (cloud KMS, PKCS#11, Vault Kubernetes auth)",
    ),
  serviceAccountTokenFile: z
    .string()
    .default("/var/run/secrets/kubernetes.io/serviceaccount/token")
    .describe(
      "ServiceAccount token file sent to Vault's Kubernetes auth (a projected token with its own audience is best)",
    ),
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
  // cert-manager's defaults, not client-go's 15/10/2 s: a renewal every 15 s instead of 2 s
  // (each costs the operator ~3 ms of CPU, bench/results.md "Idle"), and a handover within a
  // minute is far inside the 20 minutes a token is refreshed early.
  leaseDuration: durationString
    .default("60s")
    .describe("How long a Lease holds without renewal before another replica may take it"),
  renewDeadline: durationString
    .default("40s")
    .describe("How long the leader keeps trying to renew before it steps down"),
  retryPeriod: durationString
    .default("15s")
    .describe("Wait between two attempts to acquire or renew the Lease"),
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
  appCheckIntervalMs: number;
  appJwtReuseMs: number;
  shutdownTimeoutMs: number;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** This replica's name on the events it records: POD_NAME, else the host name. */
  instance: string;
};

type Key = keyof typeof schema.shape;
type Field = (typeof schema.shape)[Key];

const keys = Object.keys(schema.shape) as Key[];
const flagOf = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const flagToEnv = (key: string) => `GHAT_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
const keyOfFlag = new Map<string, Key>(keys.map((k) => [flagOf(k), k]));
/** Standard variables read after the GHAT_* one, as kubectl and the downward API name them. */
const fallbackEnv: Partial<Record<Key, string>> = {
  kubeconfig: "KUBECONFIG",
  operatorNamespace: "POD_NAMESPACE",
};

interface FieldInfo {
  kind: "string" | "int" | "number" | "duration" | "bool" | "enum";
  choices: string[];
  defaultValue: unknown;
}

/** What a field takes and its default, read off the schema (through default, optional, pipe). */
function fieldInfo(field: Field): FieldInfo {
  let defaultValue: unknown;
  let t: z.core.$ZodType = field;
  for (;;) {
    const def = t._zod.def;
    if (def.type === "pipe") t = (def as z.core.$ZodPipeDef).in;
    else if (def.type === "default") {
      defaultValue = (def as z.core.$ZodDefaultDef).defaultValue;
      t = (def as z.core.$ZodDefaultDef).innerType;
    } else if (def.type === "optional") t = (def as z.core.$ZodOptionalDef).innerType;
    else break;
  }
  if (t instanceof z.ZodEnum) {
    const choices = t.options.map(String);
    const bool = choices.length === 2 && choices.includes("true") && choices.includes("false");
    return { kind: bool ? "bool" : "enum", choices, defaultValue };
  }
  if (t instanceof z.ZodNumber) return { kind: t.isInt ? "int" : "number", choices: [], defaultValue };
  if (t === durationString) return { kind: "duration", choices: [], defaultValue };
  return { kind: "string", choices: [], defaultValue };
}

const info = new Map<Key, FieldInfo>(keys.map((k) => [k, fieldInfo(schema.shape[k])]));
const isBool = (key: Key) => info.get(key)?.kind === "bool";

/** Go's strconv.ParseBool spellings, which controller-runtime's boolean flags accept. */
function normalizeBool(v: string): string {
  if (["1", "t", "T", "true", "TRUE", "True"].includes(v)) return "true";
  if (["0", "f", "F", "false", "FALSE", "False"].includes(v)) return "false";
  return v;
}

export function usage(): string {
  const rows = keys.map((key) => {
    const { kind, choices, defaultValue } = info.get(key) as FieldInfo;
    const flag = `--${flagOf(key)}${kind === "bool" ? "" : ` ${kind === "enum" ? "string" : kind}`}`;
    const parts = [schema.shape[key].description ?? ""];
    if (kind === "enum") parts.push(`(one of ${choices.join(", ")})`);
    if (defaultValue !== undefined && defaultValue !== "") {
      parts.push(
        `(default ${kind === "string" || kind === "enum" ? JSON.stringify(defaultValue) : String(defaultValue)})`,
      );
    }
    const envs = [flagToEnv(key), fallbackEnv[key]].filter(Boolean).map((e) => `$${e}`);
    parts.push(`[${envs.join(", ")}]`);
    return { flag, text: parts.filter(Boolean).join(" ") };
  });
  const width = Math.max(...rows.map((r) => r.flag.length)) + 2;
  return [
    "Usage: ghat run [flags]",
    "",
    "Runs the operator. Each flag can also be set by the environment variable in brackets; a flag wins.",
    "Boolean flags stand alone (--leader-elect) or take a value (--leader-elect=false).",
    "",
    "Flags:",
    ...rows.map((r) => `  ${r.flag.padEnd(width)}${r.text}`),
    `  ${"-h, --help".padEnd(width)}Show this help`,
    `  ${"-v, --version".padEnd(width)}Show the version and exit`,
    "",
  ].join("\n");
}

/** Bad flags or values: one line per problem, each naming the flag or variable to fix. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** Reads `--flag value`, `--flag=value` and bare boolean flags (`--leader-elect`). Last one wins. */
function readFlags(argv: string[], problems: string[]): Map<Key, string> {
  const values = new Map<Key, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const m = /^--?([a-z0-9][a-z0-9-]*)(?:=([\s\S]*))?$/.exec(arg);
    if (!m) {
      problems.push(
        arg.startsWith("-") && arg !== "-" && arg !== "--"
          ? `unknown flag ${arg}`
          : `unexpected argument "${arg}"`,
      );
      continue;
    }
    const name = m[1] as string;
    const key = keyOfFlag.get(name);
    if (key === undefined) {
      problems.push(`unknown flag ${arg.replace(/=[\s\S]*$/, "")}`);
      continue;
    }
    let value = m[2];
    if (value === undefined) {
      const next = argv[i + 1];
      if (isBool(key)) {
        // controller-runtime's booleans are bare; "--leader-elect true" is also accepted.
        if (next === "true" || next === "false") {
          value = next;
          i++;
        } else value = "true";
      } else if (next === undefined || /^--?[a-z]/.test(next)) {
        problems.push(`flag --${name} needs a value`);
        continue;
      } else {
        value = next;
        i++;
      }
    }
    values.set(key, isBool(key) ? normalizeBool(value) : value);
  }
  return values;
}

/** An issue's message without zod's generic lead-in ("Invalid input: "). */
function issueText(issue: z.core.$ZodIssue): string {
  if (issue.code === "invalid_type" && issue.expected === "number") return "expected a number";
  if (issue.code === "invalid_value") return `expected one of ${issue.values.map(String).join(", ")}`;
  return issue.message.replace(/^(Invalid input|Invalid option|Too small|Too big): /, "");
}

/**
 * Flags win over GHAT_* environment variables; KUBECONFIG and POD_NAMESPACE are honoured, and
 * POD_NAME names this replica. Throws a ConfigError naming each bad flag or variable.
 */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const problems: string[] = [];
  const flags = readFlags(argv, problems);
  const raw: Record<string, unknown> = {};
  const source = new Map<Key, { name: string; value: string }>();
  for (const key of keys) {
    const fromFlag = flags.get(key);
    if (fromFlag !== undefined) {
      raw[key] = fromFlag;
      source.set(key, { name: `--${flagOf(key)}`, value: fromFlag });
      continue;
    }
    for (const name of [flagToEnv(key), fallbackEnv[key]]) {
      const v = name ? env[name] : undefined;
      if (name && v) {
        raw[key] = isBool(key) ? normalizeBool(v) : v;
        source.set(key, { name, value: v });
        break;
      }
    }
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    // In the order of --help, whatever order the schema checked them in.
    const order = (issue: z.core.$ZodIssue) => keys.indexOf(issue.path[0] as Key);
    for (const issue of [...parsed.error.issues].sort((a, b) => order(a) - order(b))) {
      const key = issue.path[0] as Key | undefined;
      const from = key === undefined ? undefined : source.get(key);
      const name = from?.name ?? (key === undefined ? "configuration" : `--${flagOf(key)}`);
      problems.push(
        `invalid value for ${name}: ${issueText(issue)}${from ? ` (got ${JSON.stringify(from.value)})` : ""}`,
      );
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  const data = parsed.data;
  return {
    ...data,
    revokeSupersededAfterMs: parseDuration(data.revokeSupersededAfter.replace(/^0$/, "0s")),
    terminalRetryMs: parseDuration(data.terminalRetry),
    restartGapMs: parseDuration(data.restartGap),
    githubTimeoutMs: parseDuration(data.githubTimeout),
    secondaryRateLimitWaitMs: parseDuration(data.secondaryRateLimitWait),
    minMintIntervalMs: parseDuration(data.minMintInterval.replace(/^0$/, "0s")),
    minTokenLifetimeMs: parseDuration(data.minTokenLifetime),
    reconcileTimeoutMs: parseDuration(data.reconcileTimeout),
    appJwtReuseMs: Math.min(300_000, parseDuration(data.appJwtReuse.replace(/^0$/, "0s"))),
    appCheckIntervalMs: Math.max(10_000, parseDuration(data.appCheckInterval)),
    shutdownTimeoutMs: parseDuration(data.shutdownTimeout),
    leaseDurationMs: parseDuration(data.leaseDuration),
    renewDeadlineMs: parseDuration(data.renewDeadline),
    retryPeriodMs: parseDuration(data.retryPeriod),
    instance: env.POD_NAME?.trim() || hostname(),
  };
}

/**
 * Why the operator could not reach an API server with this configuration, or undefined.
 * main.ts uses --kubeconfig when set and the in-cluster config otherwise; both are checked
 * here so a missing one is one clear line, not a stack trace from the client library.
 */
export function kubeAccessProblem(
  config: Pick<Config, "kubeconfig">,
  env: NodeJS.ProcessEnv,
  exists: (path: string) => boolean = existsSync,
): string | undefined {
  if (config.kubeconfig) {
    return exists(config.kubeconfig) ? undefined : `kubeconfig ${config.kubeconfig} does not exist`;
  }
  if (env.KUBERNETES_SERVICE_HOST) return undefined;
  return "no kubeconfig: pass --kubeconfig or set KUBECONFIG, or run in a cluster";
}

/** The settings worth stating in the first log line. */
export function startupSummary(config: Config): Record<string, unknown> {
  return {
    namespaces: config.namespaces.length ? config.namespaces : "all",
    operatorNamespace: config.operatorNamespace,
    leaderElect: config.leaderElect,
    ...(config.leaderElect
      ? { lease: `${config.leaderElectionNamespace ?? config.operatorNamespace}/${config.leaderElectionId}` }
      : {}),
    instance: config.instance,
    workers: config.workers,
  };
}

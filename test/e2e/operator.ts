import { Writable } from "node:stream";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { expect } from "vitest";
import { stringify } from "yaml";
import { group, version } from "../../src/api/meta.ts";
import { parseConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { type Operator, startOperator } from "../../src/main.ts";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { type Simulator, startSimulator } from "../../src/sim/simulator.ts";
import { localFlags } from "./processes.ts";

/** Every log line every operator wrote during the run, for the secret-leak scan. */
export const allLogs: string[] = [];

export interface RunningOperator {
  operator: Operator;
  logs: string[];
  stop(): Promise<void>;
}

/** Starts the real operator in-process against the shared control plane. */
export async function runOperator(kubeconfig: string, flags: string[] = []): Promise<RunningOperator> {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      const line = String(chunk);
      logs.push(line);
      allLogs.push(line);
      cb();
    },
  });
  const config = parseConfig([...localFlags(kubeconfig), ...flags], {});
  const operator = await startOperator(config, { log: createLogger({ level: "debug", destination: sink }) });
  return { operator, logs, stop: () => operator.stop() };
}

export const appId = 4242;
export const installationId = 9001;
export const owner = "acme";

/** A simulator with one App installed on org "acme" with three repositories. */
export async function startGitHub(options: { tokenLifetimeSeconds?: number } = {}) {
  const keys = generateAppKeyPair();
  const sim: Simulator = await startSimulator({
    ...(options.tokenLifetimeSeconds ? { tokenLifetimeSeconds: options.tokenLifetimeSeconds } : {}),
    seed: {
      apps: [
        {
          id: appId,
          clientId: "Iv23liE2eTest",
          slug: "ghat-e2e",
          name: "ghat e2e",
          owner,
          publicKeys: [keys.publicKeyPem],
        },
      ],
      installations: [
        {
          id: installationId,
          appId,
          account: { login: owner, type: "Organization" },
          permissions: { contents: "write", metadata: "read", issues: "write", pull_requests: "read" },
          repositorySelection: "all",
        },
      ],
      repositories: [
        { id: 501, owner, name: "app", private: true },
        { id: 502, owner, name: "library", private: true },
        { id: 503, owner, name: "docs", private: false },
      ],
    },
  });
  return { sim, keys };
}

export class Kube {
  readonly kc = new KubeConfig();
  readonly core: CoreV1Api;
  readonly custom: CustomObjectsApi;
  constructor(kubeconfig: string) {
    this.kc.loadFromFile(kubeconfig);
    this.core = this.kc.makeApiClient(CoreV1Api);
    this.custom = this.kc.makeApiClient(CustomObjectsApi);
  }

  async createKeySecret(namespace: string, name: string, pem: string, key = "private-key.pem") {
    await this.core.createNamespacedSecret({
      namespace,
      body: { metadata: { name }, stringData: { [key]: pem } },
    });
  }

  async createApp(namespace: string, name: string, spec: Record<string, unknown>) {
    await this.custom.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural: "githubapps",
      body: { apiVersion: `${group}/${version}`, kind: "GitHubApp", metadata: { name }, spec },
    });
  }

  async getToken(namespace: string, name: string): Promise<TokenObject | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({
        group,
        version,
        namespace,
        plural: "githubapptokens",
        name,
      })) as TokenObject;
    } catch {
      return undefined;
    }
  }

  async secret(namespace: string, name: string) {
    try {
      return await this.core.readNamespacedSecret({ namespace, name });
    } catch {
      return undefined;
    }
  }

  async secretValue(namespace: string, name: string, key = "token"): Promise<string | undefined> {
    const s = await this.secret(namespace, name);
    const v = s?.data?.[key];
    return v === undefined ? undefined : Buffer.from(v, "base64").toString("utf8");
  }
}

export interface TokenObject {
  metadata: { name: string; namespace: string; generation?: number };
  spec: Record<string, unknown>;
  status?: {
    conditions?: { type: string; status: string; reason: string; message: string }[];
    expiresAt?: string;
    refreshAt?: string;
    installationId?: number;
    permissions?: Record<string, string>;
    observedGeneration?: number;
  };
}

export function ready(t: TokenObject | undefined) {
  return t?.status?.conditions?.find((c) => c.type === "Ready");
}

type Condition = NonNullable<ReturnType<typeof ready>>;

/** The token's Ready condition and generations, for failure messages (status and message cut at `limit`). */
export function describeReady(t: TokenObject | undefined, limit?: number): string {
  const r = ready(t);
  if (!r) return `no Ready condition (status ${JSON.stringify(t?.status ?? null).slice(0, limit)})`;
  return `Ready ${r.status} ${r.reason} (generation ${t?.metadata.generation}, observed ${t?.status?.observedGeneration}): ${r.message.slice(0, limit)}`;
}

/**
 * Polls until the token's Ready condition is about its current generation and `settled`
 * accepts it; returns the token. While it waits, the poll shows `describeReady` (cut at `limit`).
 */
export async function settleReady(
  kube: Kube,
  namespace: string,
  name: string,
  settled: (r: Condition) => boolean,
  poll: { timeout: number; interval: number; message?: string; limit?: number },
): Promise<TokenObject> {
  const { limit, ...options } = poll;
  let last: TokenObject | undefined;
  await expect
    .poll(async () => {
      last = await kube.getToken(namespace, name);
      const r = ready(last);
      const current = r !== undefined && last?.status?.observedGeneration === last?.metadata.generation;
      return current && settled(r) ? "settled" : describeReady(last, limit);
    }, options)
    .toBe("settled");
  return last as TokenObject;
}

/** YAML for a GitHubAppToken with sensible defaults. */
export function tokenYaml(name: string, spec: Record<string, unknown>): string {
  return stringify({
    apiVersion: `${group}/${version}`,
    kind: "GitHubAppToken",
    metadata: { name },
    spec: {
      appRef: { name: "app" },
      installation: { owner },
      permissions: { contents: "read" },
      secrets: [{ name: `${name}-token` }],
      ...spec,
    },
  });
}

/**
 * Everything a user or an attacker with read access to logs, events, status or metrics could
 * see, searched for every token the simulator issued and for the App's private keys.
 * Returns what leaked (described, never the secret itself).
 */
export async function leaks(
  github: { sim: Simulator; keys: { privateKeyPkcs1Pem: string; privateKeyPkcs8Pem: string } },
  seen: string[],
) {
  const { kubectl } = await import("../support/cluster.ts");
  const events = (await kubectl(["get", "events", "-A", "-o", "json"])).stdout;
  const objects = (await kubectl(["get", "githubapptokens,githubapps,clustergithubapps", "-A", "-o", "json"]))
    .stdout;
  const haystack = [...seen, events, objects].join("\n");
  const tokens = [...github.sim.state.tokens.keys()];
  const keyLines = [github.keys.privateKeyPkcs1Pem, github.keys.privateKeyPkcs8Pem].flatMap((pem) =>
    pem.split("\n").filter((l) => l.length >= 60 && !l.startsWith("-----")),
  );
  return [
    ...tokens.filter((t) => haystack.includes(t)).map((t) => `token ${t.slice(0, 8)}… (${t.length} chars)`),
    ...keyLines.filter((l) => haystack.includes(l)).map(() => "a private key line"),
    ...(haystack.includes("PRIVATE KEY-----") ? ["a PEM header"] : []),
  ];
}

/** Leader-election timings short enough for tests (lease 4 s). */
export const fastLeaderElection = [
  "--leader-elect",
  "true",
  "--lease-duration",
  "4s",
  "--renew-deadline",
  "3s",
  "--retry-period",
  "500ms",
];

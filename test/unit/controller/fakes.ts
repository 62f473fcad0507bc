import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { Writable } from "node:stream";
import type { GitHubAppToken } from "../../../src/api/githubapptoken.ts";
import { AppResolver } from "../../../src/controller/apps.ts";
import type { GitHubGateway, Minted, MintGate, ObservedSecretRaw } from "../../../src/controller/ports.ts";
import { Reconciler } from "../../../src/controller/reconcile.ts";
import { GhatError, SecretExists } from "../../../src/core/errors.ts";
import type { DesiredSecret } from "../../../src/core/outputs.ts";
import { finalizer, type KubeWriter, type ObjectRef, type OwnerRef } from "../../../src/kube/kube.ts";
import { createLogger } from "../../../src/log.ts";
import { FakeClock } from "../fakeclock.ts";

export const keyPair = generateKeyPairSync("rsa", { modulusLength: 2048 });
const keyPem = keyPair.privateKey.export({ type: "pkcs1", format: "pem" }).toString();

/** An in-memory API server slice: tokens, apps, Secrets, events. */
export class FakeKube implements KubeWriter {
  tokens = new Map<string, GitHubAppToken>();
  apps = new Map<string, unknown>();
  secrets = new Map<string, ObservedSecretRaw & { metadata: { name: string } }>();
  keySecrets = new Map<string, Record<string, string>>();
  events: { reason: string; type: string; message: string }[] = [];
  writes = 0;
  /** Secrets read through the source (the API server GETs a cache miss costs). */
  secretReads = 0;

  async applySecret(
    namespace: string,
    secret: DesiredSecret,
    owner: OwnerRef,
    _observedType?: string,
    createOnly = false,
  ) {
    if (createOnly && this.secrets.has(`${namespace}/${secret.name}`))
      throw new SecretExists(namespace, secret.name);
    this.writes++;
    this.secrets.set(`${namespace}/${secret.name}`, {
      type: secret.type,
      metadata: {
        name: secret.name,
        labels: secret.labels,
        annotations: secret.annotations,
        ownerReferences: [{ uid: owner.uid }],
      },
      data: Object.fromEntries(
        Object.entries(secret.data).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
      ),
    });
  }
  async deleteSecret(namespace: string, name: string) {
    this.writes++;
    this.secrets.delete(`${namespace}/${name}`);
  }
  async applyTokenStatus(namespace: string, name: string, status: Record<string, unknown>) {
    this.writes++;
    const t = this.tokens.get(`${namespace}/${name}`);
    if (t) t.status = structuredClone(status) as GitHubAppToken["status"];
  }
  /** Thrown by the next finalizer write. */
  finalizerError: GhatError | undefined;
  async setFinalizer(namespace: string, name: string, present: boolean) {
    const err = this.finalizerError;
    this.finalizerError = undefined;
    if (err) throw err;
    this.writes++;
    const t = this.tokens.get(`${namespace}/${name}`);
    if (!t) return;
    const current = t.metadata.finalizers ?? [];
    t.metadata.finalizers = present ? [...current, finalizer] : current.filter((f) => f !== finalizer);
    if (!present && t.metadata.deletionTimestamp) this.tokens.delete(`${namespace}/${name}`);
  }
  appFinalizers = new Map<string, boolean>();
  async setAppFinalizer(namespace: string, name: string, present: boolean) {
    this.writes++;
    this.appFinalizers.set(`${namespace}/${name}`, present);
  }
  async event(_ref: ObjectRef, type: "Normal" | "Warning", reason: string, message: string) {
    this.events.push({ type, reason, message });
  }
  secretData(ns: string, name: string): Record<string, string> | undefined {
    const s = this.secrets.get(`${ns}/${name}`);
    return (
      s &&
      Object.fromEntries(
        Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]),
      )
    );
  }
}

/** A GitHub that mints numbered tokens living `lifetimeMs`, with injectable failures. */
export class FakeGitHub implements GitHubGateway {
  minted: string[] = [];
  revoked: string[] = [];
  failNext: GhatError[] = [];
  lifetimeMs = 3_600_000;
  granted: Record<string, string> | undefined;
  /** The installation's account, as the gateway's lookup answers it. */
  owner = "acme";
  /** Full names GitHub grants (undefined: the request named none). */
  grantedRepositories: string[] | undefined;
  /** Where each revocation went. */
  revokedVia: { token: string; baseUrl: string; proxy: string | undefined }[] = [];
  readonly clock: FakeClock;
  constructor(clock: FakeClock) {
    this.clock = clock;
  }
  async mint(_app: unknown, token: GitHubAppToken): Promise<Minted> {
    const err = this.failNext.shift();
    if (err) throw err;
    const value = `ghs_${String(this.minted.length + 1).padStart(36, "0")}`;
    this.minted.push(value);
    return {
      token: value,
      expiresAt: Math.floor((this.clock.now() + this.lifetimeMs) / 1000) * 1000,
      installationId: 42,
      owner: this.owner,
      permissions: this.granted ?? { ...(token.spec.permissions as Record<string, string>) },
      repositorySelection: "selected",
      repositories: this.grantedRepositories,
    };
  }
  async revoke(
    endpoint: { baseUrl?: string; proxy?: string | undefined; spec?: { baseUrl: string } },
    token: string,
  ) {
    this.revoked.push(token);
    this.revokedVia.push({
      token,
      baseUrl: endpoint.baseUrl ?? endpoint.spec?.baseUrl ?? "",
      proxy: endpoint.proxy,
    });
  }
}

export function tokenObject(overrides: Partial<GitHubAppToken["spec"]> = {}): GitHubAppToken {
  return {
    apiVersion: "ghat.dev/v1alpha1",
    kind: "GitHubAppToken",
    metadata: {
      name: "ci",
      namespace: "team",
      uid: "uid-1",
      generation: 1,
      resourceVersion: "1",
      finalizers: [finalizer],
    },
    spec: {
      appRef: { kind: "GitHubApp", name: "app" },
      installation: { owner: "acme" },
      permissions: { contents: "read" },
      secrets: [{ name: "ci-token", format: "token" }],
      refreshPolicy: { refreshBefore: "20m", minRemainingLifetime: "10m" },
      sharing: "Namespace",
      ...overrides,
    },
  };
}

export function harness(options: { log?: Writable; limiter?: MintGate; canAct?: () => boolean } = {}) {
  const clock = new FakeClock();
  const kube = new FakeKube();
  const github = new FakeGitHub(clock);
  const requeues = new Map<string, number>();
  kube.apps.set("GitHubApp/team/app", {
    apiVersion: "ghat.dev/v1alpha1",
    kind: "GitHubApp",
    metadata: { name: "app", namespace: "team" },
    spec: {
      appId: 1,
      privateKeySecretRef: { name: "app-key", key: "private-key.pem" },
      baseUrl: "https://api.github.com",
    },
  });
  kube.keySecrets.set("team/app-key", { "private-key.pem": Buffer.from(keyPem).toString("base64") });
  const log = createLogger({
    level: "debug",
    destination: options.log ?? new Writable({ write: (_c, _e, cb) => cb() }),
  });
  const inner = new Reconciler({
    clock,
    log,
    kube,
    github,
    source: {
      token: (ns, name) => kube.tokens.get(`${ns}/${name}`),
      secret: async (ns, name) => {
        kube.secretReads++;
        return kube.secrets.get(`${ns}/${name}`);
      },
      // Like the real managed-Secret cache: it has only the Secrets labelled as ghat's.
      cached: (ns, name) =>
        kube.secrets.get(`${ns}/${name}`)?.metadata.labels?.["app.kubernetes.io/managed-by"] === "ghat",
      holders: (ns, hash, exceptToken) =>
        [...kube.secrets.entries()].filter(
          ([k, s]) =>
            k.startsWith(`${ns}/`) &&
            s.metadata.annotations?.["ghat.dev/token-hash"] === hash &&
            s.metadata.labels?.["ghat.dev/token"] !== exceptToken,
        ).length,
    },
    apps: new AppResolver({
      operatorNamespace: "ghat-system",
      installationOwner: async () => "acme",
      fingerprint: () => "fp-1",
      parseKey: (pem: string): KeyObject => {
        if (!pem.includes("PRIVATE KEY")) throw new GhatError("InvalidPrivateKey", "not a PEM key");
        return keyPair.privateKey;
      },
      source: {
        app: (kind, ns, name) => kube.apps.get(`${kind}/${ns}/${name}`),
        keySecret: async (ns, name) => kube.keySecrets.get(`${ns}/${name}`),
        namespaceLabels: () => ({}),
      },
    }),
    random: () => 0.5,
    options: { revokeSupersededAfterMs: 60_000, maxRevokeAttemptsOnDelete: 3, terminalRetryMs: 15 * 60_000 },
    ...(options.limiter ? { limiter: options.limiter } : {}),
    ...(options.canAct ? { canAct: options.canAct } : {}),
  });
  // What the work queue does with each outcome, as a map of pending requeues.
  const reconciler = {
    async reconcile(key: string): Promise<void> {
      const outcome = await inner.reconcile(key);
      if (outcome.forget) requeues.delete(key);
      if (outcome.requeueAt !== undefined) requeues.set(key, outcome.requeueAt);
    },
    reset: () => inner.reset(),
    stop: () => inner.stop(),
    get pendingRevocations() {
      return inner.pendingRevocations;
    },
    statusSeen: (key: string, obj: Parameters<Reconciler["statusSeen"]>[1]) => inner.statusSeen(key, obj),
    get statusCopies() {
      return inner.statusCopies;
    },
  };
  return { clock, kube, github, reconciler, requeues };
}

import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { appSecretName } from "../api/githubapp.ts";
import { group, version } from "../api/meta.ts";
import type { Clock } from "../clock.ts";
import { GhatError } from "../core/errors.ts";
import { annotations, labels, managedByValue } from "../core/outputs.ts";
import type { Logger } from "../log.ts";
import { Informer, withoutManagedFields } from "./informer.ts";
import { call } from "./kube.ts";
import { KubeRest, pathOf } from "./rest.ts";
import { SecretDataCache, type SecretView } from "./secrets.ts";

export type Kind = "GitHubAppToken" | "GitHubApp" | "ClusterGitHubApp" | "Secret" | "KeySecret" | "Namespace";

export interface CacheOptions {
  kubeConfig: KubeConfig;
  clock: Clock;
  log: Logger;
  /** Namespaces to watch for GitHubAppTokens and GitHubApps; empty means all. */
  namespaces: readonly string[];
  /**
   * Where ClusterGitHubApps' key Secrets live. Without it a ClusterGitHubApp's key is taken to
   * be referenced in every namespace (watches are then closed less eagerly, never wrongly).
   */
  operatorNamespace?: string;
  onChange: (kind: Kind, obj: KubernetesObject, event: "add" | "update" | "delete") => void;
  onResync?: (kind: Kind) => void;
  /** Deadline of each list page request (default 30 s). */
  listTimeoutMs?: number;
  /** A watch quiet for this long (+ jitter) is restarted (default 5 min). */
  watchIdleMs?: number;
  /** How long a reconcile waits for a new key-Secret watch's first list (default 10 s). */
  keySyncTimeoutMs?: number;
  /** Bounds of the owned-Secret data cache. */
  secretData?: { maxEntryBytes?: number; maxTotalBytes?: number };
}

type Obj = KubernetesObject & { data?: Record<string, string>; type?: string };

/**
 * The informer caches ghat reads from: its three kinds, the Secrets it manages (by label,
 * metadata only: their data is read on demand, see secret()), namespaces (for policy
 * selectors), and one narrow watch per private-key Secret that some App references (field
 * selector on its name), so key rotation is seen at once without watching every Secret.
 */
export class ClusterCache {
  readonly #o: CacheOptions;
  readonly #rest: KubeRest;
  readonly #tokens: Informer<Obj>[] = [];
  readonly #apps: Informer<Obj>[] = [];
  readonly #clusterApps: Informer<Obj>;
  readonly #secrets: Informer<Obj>[] = [];
  readonly #namespaces: Informer<Obj>;
  readonly #keySecrets = new Map<string, Informer<Obj>>();
  readonly #data: SecretDataCache;
  /** Key Secret ("namespace/name", or "*\/name" for a ClusterGitHubApp without operatorNamespace) of each App. */
  readonly #appKeys = new Map<string, string>();
  /** How many Apps reference each key Secret id. */
  readonly #keyRefs = new Map<string, number>();
  /**
   * Secrets ghat wrote whose watch event has not arrived yet, as the write returned them:
   * any event for the Secret (the echo, a later change, a delete, a relist) drops the entry.
   */
  readonly #written = new Map<string, SecretView>();
  /** Namespaces whose delete event was seen (until one of that name is added again). */
  readonly #deletedNamespaces = new Set<string>();
  #started = false;

  constructor(options: CacheOptions) {
    this.#o = options;
    this.#rest = KubeRest.for(options.kubeConfig);
    this.#data = new SecretDataCache(options.secretData);
    const scopes = options.namespaces.length === 0 ? [undefined] : options.namespaces;
    const selector = `${labels.managedBy}=${managedByValue}`;
    for (const ns of scopes) {
      this.#tokens.push(this.#customInformer("GitHubAppToken", "githubapptokens", ns));
      this.#apps.push(this.#customInformer("GitHubApp", "githubapps", ns));
      // Metadata only: anyone may put this label on a Secret, and their data is not ours to hold.
      this.#secrets.push(
        this.#informer("Secret", ns ? `/api/v1/namespaces/${ns}/secrets` : "/api/v1/secrets", {
          resource: `Secrets labelled ${selector}${ns ? ` in ${ns}` : ""}`,
          labelSelector: selector,
          metadataOnly: true,
        }),
      );
    }
    this.#clusterApps = this.#customInformer("ClusterGitHubApp", "clustergithubapps", undefined);
    this.#namespaces = this.#informer("Namespace", "/api/v1/namespaces", { resource: "Namespaces" });
  }

  /** Starts every informer and waits for their first lists (at most `syncTimeoutMs`, when given). */
  async start(syncTimeoutMs?: number): Promise<void> {
    this.#started = true;
    for (const i of this.#all()) i.start();
    await this.waitForSync(syncTimeoutMs);
  }

  /**
   * Resolves once every informer has its first list; with a deadline, rejects with a GhatError
   * "Timeout" naming a cache that is not synced by then.
   */
  async waitForSync(timeoutMs?: number): Promise<void> {
    await Promise.all(this.#main().map((i) => i.waitForSync(timeoutMs)));
  }

  async stop(): Promise<void> {
    this.#started = false;
    await Promise.all(this.#all().map((i) => i.stop()));
  }

  /** Every main cache has its first list (key-Secret watches are waited for by their readers). */
  get synced(): boolean {
    return this.#main().every((i) => i.synced);
  }

  token(namespace: string, name: string): Obj | undefined {
    return find(this.#tokens, name, namespace);
  }

  tokens(): Obj[] {
    return this.#tokens.flatMap((i) => [...i.list()]);
  }

  app(kind: "GitHubApp" | "ClusterGitHubApp", namespace: string, name: string): Obj | undefined {
    return kind === "GitHubApp" ? find(this.#apps, name, namespace) : this.#clusterApps.get(name);
  }

  /** Every cached GitHubApp and ClusterGitHubApp. */
  apps(): { kind: "GitHubApp" | "ClusterGitHubApp"; obj: Obj }[] {
    return [
      ...this.#apps.flatMap((i) => [...i.list()].map((obj) => ({ kind: "GitHubApp" as const, obj }))),
      ...[...this.#clusterApps.list()].map((obj) => ({ kind: "ClusterGitHubApp" as const, obj })),
    ];
  }

  /** A managed Secret's metadata (labels, annotations, owner references, resourceVersion; no data). */
  managedSecretMetadata(namespace: string, name: string): Obj | undefined {
    return find(this.#secrets, name, namespace);
  }

  /** Managed Secrets in a namespace whose ghat.dev/token-hash is `hash`, except those of `exceptToken`. */
  secretsHolding(namespace: string, hash: string, exceptToken: string): number {
    let n = 0;
    for (const informer of this.#secrets) {
      for (const s of informer.list(namespace)) {
        if (
          s.metadata?.annotations?.[annotations.tokenHash] === hash &&
          s.metadata.labels?.[labels.token] !== exceptToken
        )
          n++;
      }
    }
    return n;
  }

  /** A Secret not in the managed cache, read from the API server (to detect name conflicts). */
  async readSecret(namespace: string, name: string): Promise<Obj | undefined> {
    return (await call(
      `read Secret ${namespace}/${name}`,
      () => this.#rest.get<Obj>(pathOf("v1", "secrets", namespace, name)),
      [404],
    )) as Obj | undefined;
  }

  /**
   * A Secret with its data: metadata from the managed cache, data from a GET, kept per
   * resourceVersion when a GitHubAppToken owns the Secret and it is small (see SecretDataCache).
   * A Secret not in the managed cache is read from the API server (to detect name conflicts).
   */
  async secret(namespace: string, name: string): Promise<SecretView | undefined> {
    const meta = this.managedSecretMetadata(namespace, name);
    if (!meta) {
      const written = this.#written.get(`${namespace}/${name}`);
      if (written) return written;
    }
    if (meta?.metadata) {
      const hit = this.#data.get(namespace, name, meta.metadata.resourceVersion ?? "");
      if (hit)
        return {
          type: hit.type,
          metadata: meta.metadata as NonNullable<SecretView["metadata"]>,
          data: hit.data,
        };
    }
    const full = await this.readSecret(namespace, name);
    if (!full) return undefined;
    if (full.metadata) full.metadata = withoutManagedFields(full.metadata);
    // Only a Secret the metadata cache sees can be kept: its updates and deletes drop the entry.
    if (meta) this.#data.set(full as SecretView);
    return full as SecretView;
  }

  /**
   * A Secret as ghat's own write returned it: its data is kept as a read would have kept it,
   * so the reconcile that follows the write's echo needs no GET.
   */
  rememberSecret(secret: SecretView & { metadata?: { managedFields?: unknown } }): void {
    if (secret.metadata) secret.metadata = withoutManagedFields(secret.metadata);
    this.#data.set(secret);
    const id = `${secret.metadata?.namespace ?? ""}/${secret.metadata?.name ?? ""}`;
    // Until the metadata cache has seen it, the write itself answers for it (not a GET).
    if (this.#written.size >= 10_000) this.#written.clear();
    this.#written.set(id, secret);
  }

  /** Owned-Secret data kept now (entries and decoded bytes), for tests and metrics. */
  secretDataCached(): { entries: number; bytes: number } {
    return { entries: this.#data.size, bytes: this.#data.bytes };
  }

  namespaceLabels(namespace: string): Record<string, string> {
    return this.#namespaces.get(namespace)?.metadata?.labels ?? {};
  }

  /**
   * A private-key Secret's data (base64 values). The first call for a Secret some App references
   * starts a watch on it (field selector on its name) and waits at most `keySyncTimeoutMs` for
   * that watch's first list; a Secret no App references is read once, without a watch.
   */
  async keySecret(namespace: string, name: string): Promise<Record<string, string> | undefined> {
    if (!isObjectName(name))
      throw new GhatError(
        "InvalidSpec",
        `"${name}" is not a valid Secret name (lowercase letters, digits, "-" and ".", at most 253 characters)`,
      );
    const id = `${namespace}/${name}`;
    let informer = this.#keySecrets.get(id);
    // A namespace seen deleted (a late reconcile of its tokens) gets no new watch.
    if (!informer && this.#deletedNamespaces.has(namespace)) return undefined;
    if (!informer) {
      if (!this.#referenced(namespace, name)) return (await this.readSecret(namespace, name))?.data;
      const fieldSelector = `metadata.name=${name}`;
      informer = this.#informer("KeySecret", `/api/v1/namespaces/${namespace}/secrets`, {
        resource: `Secret ${id}`,
        fieldSelector,
        // A selector the server refuses will be refused again: stop, and tell the reader.
        fatalStatuses: [400],
      });
      this.#keySecrets.set(id, informer);
      if (this.#started) informer.start();
    }
    if (!informer.synced) {
      try {
        await informer.waitForSync(this.#o.keySyncTimeoutMs ?? 10_000);
      } catch (err) {
        // Closed meanwhile (its App changed key or went away): one read answers this reader.
        if (this.#keySecrets.get(id) !== informer) return (await this.readSecret(namespace, name))?.data;
        const failed = informer.failed;
        if (failed) {
          this.#keySecrets.delete(id);
          void informer.stop();
          throw new GhatError(
            "PrivateKeyNotFound",
            `Secret "${name}" in namespace "${namespace}" cannot be watched: ${failed.message}`,
            { ...(failed.status === undefined ? {} : { status: failed.status }) },
          );
        }
        throw err;
      }
    }
    return informer.get(name, namespace)?.data;
  }

  /** Counts App -> key Secret references, and closes a key watch no App references any more. */
  #trackApp(kind: "GitHubApp" | "ClusterGitHubApp", obj: Obj, event: "add" | "update" | "delete"): void {
    const ns = obj.metadata?.namespace ?? "";
    const app = `${kind}/${ns}/${obj.metadata?.name ?? ""}`;
    const keyName = appSecretName((obj as { spec?: unknown }).spec);
    const keyNs = kind === "GitHubApp" ? ns : (this.#o.operatorNamespace ?? "*");
    const next = event !== "delete" && typeof keyName === "string" ? `${keyNs}/${keyName}` : undefined;
    const before = this.#appKeys.get(app);
    if (before === next) return;
    if (next === undefined) this.#appKeys.delete(app);
    else {
      this.#appKeys.set(app, next);
      this.#keyRefs.set(next, (this.#keyRefs.get(next) ?? 0) + 1);
    }
    if (before === undefined) return;
    const left = (this.#keyRefs.get(before) ?? 1) - 1;
    if (left > 0) {
      this.#keyRefs.set(before, left);
      return;
    }
    this.#keyRefs.delete(before);
    const [beforeNs = "", ...rest] = before.split("/");
    const beforeName = rest.join("/");
    for (const [id, informer] of this.#keySecrets) {
      const [wNs = "", ...wRest] = id.split("/");
      const wName = wRest.join("/");
      if (wName !== beforeName || (beforeNs !== "*" && wNs !== beforeNs)) continue;
      if (this.#referenced(wNs, wName)) continue;
      this.#keySecrets.delete(id);
      void informer.stop();
    }
  }

  #referenced(namespace: string, name: string): boolean {
    return (this.#keyRefs.get(`${namespace}/${name}`) ?? 0) > 0 || (this.#keyRefs.get(`*/${name}`) ?? 0) > 0;
  }

  /** A deleted namespace's key-Secret watches would otherwise fail and restart for ever. */
  #forgetNamespace(namespace: string): void {
    this.#deletedNamespaces.add(namespace);
    for (const [id, informer] of this.#keySecrets) {
      if (!id.startsWith(`${namespace}/`)) continue;
      this.#keySecrets.delete(id);
      void informer.stop();
    }
  }

  /** Key-Secret watches open now, in one namespace or in all (for tests and metrics). */
  keySecretWatches(namespace?: string): number {
    if (namespace === undefined) return this.#keySecrets.size;
    return [...this.#keySecrets.keys()].filter((id) => id.startsWith(`${namespace}/`)).length;
  }

  #main(): Informer<Obj>[] {
    return [...this.#tokens, ...this.#apps, this.#clusterApps, ...this.#secrets, this.#namespaces];
  }

  #all(): Informer<Obj>[] {
    return [...this.#main(), ...this.#keySecrets.values()];
  }

  #customInformer(kind: Kind, plural: string, namespace: string | undefined): Informer<Obj> {
    const path = namespace
      ? `/apis/${group}/${version}/namespaces/${namespace}/${plural}`
      : `/apis/${group}/${version}/${plural}`;
    return this.#informer(kind, path, { resource: namespace ? `${plural} in ${namespace}` : plural });
  }

  #informer(
    kind: Kind,
    path: string,
    extra: {
      resource: string;
      labelSelector?: string;
      fieldSelector?: string;
      metadataOnly?: boolean;
      fatalStatuses?: readonly number[];
    },
  ): Informer<Obj> {
    return new Informer<Obj>({
      kubeConfig: this.#o.kubeConfig,
      path,
      ...extra,
      ...(this.#o.listTimeoutMs === undefined ? {} : { listTimeoutMs: this.#o.listTimeoutMs }),
      ...(this.#o.watchIdleMs === undefined ? {} : { watchIdleMs: this.#o.watchIdleMs }),
      clock: this.#o.clock,
      log: this.#o.log,
      onChange: (obj, event) => {
        if (kind === "Namespace") {
          const name = obj.metadata?.name ?? "";
          if (event === "delete") this.#forgetNamespace(name);
          else this.#deletedNamespaces.delete(name);
        } else if (kind === "Secret") {
          const m = obj.metadata;
          this.#written.delete(`${m?.namespace ?? ""}/${m?.name ?? ""}`);
          this.#data.drop(
            m?.namespace ?? "",
            m?.name ?? "",
            event === "delete" ? undefined : m?.resourceVersion,
          );
        } else if (kind === "GitHubApp" || kind === "ClusterGitHubApp") {
          this.#trackApp(kind, obj, event);
        }
        this.#o.onChange(kind, obj, event);
      },
      onResync: () => this.#o.onResync?.(kind),
    });
  }
}

function find(informers: Informer<Obj>[], name: string, namespace: string): Obj | undefined {
  for (const i of informers) {
    const o = i.get(name, namespace);
    if (o) return o;
  }
  return undefined;
}

/** A DNS subdomain (RFC 1123), what the API server accepts as a Secret's name. */
export function isObjectName(name: string): boolean {
  return (
    name.length > 0 &&
    name.length <= 253 &&
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name)
  );
}

/** The TokenSource the reconciler reads managed objects through (see src/controller/ports.ts). */
export function tokenSource(cache: ClusterCache): {
  token(namespace: string, name: string): unknown;
  secret(namespace: string, name: string): Promise<SecretView | undefined>;
  cached(namespace: string, name: string): boolean;
  holders(namespace: string, tokenHash: string, exceptToken: string): number;
} {
  return {
    token: (ns, name) => cache.token(ns, name),
    secret: (ns, name) => cache.secret(ns, name),
    cached: (ns, name) => cache.managedSecretMetadata(ns, name) !== undefined,
    holders: (ns, hash, exceptToken) => cache.secretsHolding(ns, hash, exceptToken),
  };
}

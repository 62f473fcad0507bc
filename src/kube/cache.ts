import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { group, version } from "../api/meta.ts";
import type { Clock } from "../clock.ts";
import { annotations, labels, managedByValue } from "../core/outputs.ts";
import type { Logger } from "../log.ts";
import { Informer } from "./informer.ts";
import { call } from "./kube.ts";

export type Kind = "GitHubAppToken" | "GitHubApp" | "ClusterGitHubApp" | "Secret" | "KeySecret" | "Namespace";

export interface CacheOptions {
  kubeConfig: KubeConfig;
  clock: Clock;
  log: Logger;
  /** Namespaces to watch for GitHubAppTokens and GitHubApps; empty means all. */
  namespaces: readonly string[];
  onChange: (kind: Kind, obj: KubernetesObject, event: "add" | "update" | "delete") => void;
  onResync?: (kind: Kind) => void;
}

type Obj = KubernetesObject & { data?: Record<string, string> };

/**
 * The informer caches ghat reads from: its three kinds, the Secrets it manages (by label),
 * namespaces (for policy selectors), and one narrow watch per referenced private-key Secret
 * (field selector on its name), so key rotation is seen at once without watching every Secret.
 */
export class ClusterCache {
  readonly #o: CacheOptions;
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #tokens: Informer<Obj>[] = [];
  readonly #apps: Informer<Obj>[] = [];
  readonly #clusterApps: Informer<Obj>;
  readonly #secrets: Informer<Obj>[] = [];
  readonly #namespaces: Informer<Obj>;
  readonly #keySecrets = new Map<string, Informer<Obj>>();
  /** Namespaces whose delete event was seen (until one of that name is added again). */
  readonly #deletedNamespaces = new Set<string>();
  #started = false;

  constructor(options: CacheOptions) {
    this.#o = options;
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api);
    this.#custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
    const scopes = options.namespaces.length === 0 ? [undefined] : options.namespaces;
    const selector = `${labels.managedBy}=${managedByValue}`;
    for (const ns of scopes) {
      this.#tokens.push(this.#customInformer("GitHubAppToken", "githubapptokens", ns));
      this.#apps.push(this.#customInformer("GitHubApp", "githubapps", ns));
      this.#secrets.push(
        this.#informer(
          "Secret",
          ns ? `/api/v1/namespaces/${ns}/secrets` : "/api/v1/secrets",
          async () =>
            asList(
              ns
                ? await this.#core.listNamespacedSecret({ namespace: ns, labelSelector: selector })
                : await this.#core.listSecretForAllNamespaces({ labelSelector: selector }),
            ),
          { labelSelector: selector },
        ),
      );
    }
    this.#clusterApps = this.#customInformer("ClusterGitHubApp", "clustergithubapps", undefined);
    this.#namespaces = this.#informer("Namespace", "/api/v1/namespaces", async () =>
      asList(await this.#core.listNamespace()),
    );
  }

  async start(): Promise<void> {
    this.#started = true;
    const all = this.#all();
    for (const i of all) i.start();
    await Promise.all(all.map((i) => i.waitForSync()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.#all().map((i) => i.stop()));
  }

  get synced(): boolean {
    return this.#all().every((i) => i.synced);
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

  managedSecret(namespace: string, name: string): Obj | undefined {
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
      () => this.#core.readNamespacedSecret({ namespace, name }),
      [404],
    )) as Obj | undefined;
  }

  namespaceLabels(namespace: string): Record<string, string> {
    return this.#namespaces.get(namespace)?.metadata?.labels ?? {};
  }

  /**
   * A private-key Secret's data (base64 values). The first call for a Secret starts a watch
   * on it (field selector on its name) and waits for that watch's first list.
   */
  async keySecret(namespace: string, name: string): Promise<Record<string, string> | undefined> {
    const id = `${namespace}/${name}`;
    let informer = this.#keySecrets.get(id);
    // A namespace seen deleted (a late reconcile of its tokens) gets no new watch.
    if (!informer && this.#deletedNamespaces.has(namespace)) return undefined;
    if (!informer) {
      informer = this.#informer(
        "KeySecret",
        `/api/v1/namespaces/${namespace}/secrets`,
        async () =>
          asList(
            await this.#core.listNamespacedSecret({ namespace, fieldSelector: `metadata.name=${name}` }),
          ),
        { fieldSelector: `metadata.name=${name}` },
      );
      this.#keySecrets.set(id, informer);
      if (this.#started) informer.start();
    }
    if (!informer.synced) await informer.waitForSync();
    return informer.get(name, namespace)?.data;
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

  #all(): Informer<Obj>[] {
    return [
      ...this.#tokens,
      ...this.#apps,
      this.#clusterApps,
      ...this.#secrets,
      this.#namespaces,
      ...this.#keySecrets.values(),
    ];
  }

  #customInformer(kind: Kind, plural: string, namespace: string | undefined): Informer<Obj> {
    const path = namespace
      ? `/apis/${group}/${version}/namespaces/${namespace}/${plural}`
      : `/apis/${group}/${version}/${plural}`;
    return this.#informer(kind, path, async () =>
      asList(
        namespace
          ? await this.#custom.listNamespacedCustomObject({ group, version, namespace, plural })
          : await this.#custom.listClusterCustomObject({ group, version, plural }),
      ),
    );
  }

  #informer(
    kind: Kind,
    path: string,
    list: () => Promise<KubernetesListObject<Obj>>,
    selectors: { labelSelector?: string; fieldSelector?: string } = {},
  ): Informer<Obj> {
    return new Informer<Obj>({
      kubeConfig: this.#o.kubeConfig,
      path,
      list,
      ...selectors,
      clock: this.#o.clock,
      log: this.#o.log,
      onChange: (obj, event) => {
        if (kind === "Namespace") {
          const name = obj.metadata?.name ?? "";
          if (event === "delete") this.#forgetNamespace(name);
          else this.#deletedNamespaces.delete(name);
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

/** client-node lists are typed per kind; the informer only needs items and metadata. */
function asList(list: unknown): KubernetesListObject<Obj> {
  const l = list as { items?: Obj[]; metadata?: { resourceVersion?: string } };
  return {
    apiVersion: "v1",
    kind: "List",
    items: l.items ?? [],
    metadata: l.metadata ?? {},
  } as KubernetesListObject<Obj>;
}

import { createHash } from "node:crypto";
import type { KubernetesObject } from "@kubernetes/client-node";
import { appSecretName } from "../api/githubapp.ts";
import type { Clock } from "../clock.ts";
import { labels } from "../core/outputs.ts";
import type { ClusterCache, Kind } from "../kube/cache.ts";
import { finalizer, type KubeWriter } from "../kube/kube.ts";
import type { Logger } from "../log.ts";
import { appKey, parseAppKey, reconcileAppFinalizer } from "./appfinalizers.ts";
import { WorkQueue } from "./queue.ts";
import type { Reconciler } from "./reconcile.ts";

interface TokenLike {
  metadata?: { name?: string; namespace?: string };
  spec?: { appRef?: { kind?: string; name?: string } };
}
interface AppLike {
  metadata?: { name?: string; namespace?: string };
  spec?: unknown;
}

export interface ControllerDeps {
  clock: Clock;
  log: Logger;
  cache: ClusterCache;
  workers: number;
  operatorNamespace: string;
  /** Writes `ghat.dev/in-use` on GitHubApps; absent: no App finalizers (unit tests). */
  kube?: Pick<KubeWriter, "setAppFinalizer">;
  /** A reconcile still running after this long gives its worker back (0: never). */
  reconcileTimeoutMs?: number;
  onOverrun?: (key: string) => void;
  onDepth?: (depth: number) => void;
  onReconciled?: (ms: number) => void;
}

/**
 * Turns informer events into GitHubAppToken keys (namespace/name) and feeds them to the
 * reconciler through the work queue. Handlers only enqueue; they never decide anything.
 */
export class Controller {
  readonly queue: WorkQueue;
  readonly #d: ControllerDeps;
  #reconciler: Reconciler | undefined;
  readonly #appFinalizersWritten = new Map<string, string>();
  /**
   * Per App, what its tokens depend on (generation, being deleted): an update that changes
   * neither — its status written by the App checker, its in-use finalizer — reconciles no
   * token. Without this, every App status write would re-reconcile all of its tokens.
   */
  readonly #appSpecSeen = new Map<string, string>();
  /**
   * Per GitHubAppToken, everything of the object but its status (uid, generation, being
   * deleted, finalizers, and a digest of its labels and annotations, so that touching a token
   * still reconciles it): an update that changes none of it — ghat's own status write, most of
   * all — queues nothing. The reconciler decides status from what it wrote itself (Reporter),
   * so a status change alone never needs a reconcile.
   */
  readonly #tokenSeen = new Map<string, string>();
  /** Secrets as ghat last wrote them (namespace/name → resourceVersion): their echo queues nothing. */
  readonly #secretsWritten = new Map<string, string>();
  /** Secrets ghat is writing: writes in flight, and the last event seen before their answer. */
  readonly #secretsWriting = new Map<string, { writes: number; early: KubernetesObject | undefined }>();
  /** GitHubAppTokens as ghat's finalizer write left them: the same for their echo. */
  readonly #tokensWritten = new Map<string, string>();

  constructor(deps: ControllerDeps) {
    this.#d = deps;
    this.queue = new WorkQueue({
      clock: deps.clock,
      workers: deps.workers,
      process: (key) => this.#process(key),
      deadlineMs: deps.reconcileTimeoutMs ?? 0,
      groupOf: (key) => {
        const app = parseAppKey(key);
        return app ? app.namespace : key.slice(0, Math.max(0, key.indexOf("/")));
      },
      onOverrun: (key) => {
        deps.log.warn({ key }, "Reconcile overran its deadline; its worker was given back");
        deps.onOverrun?.(key);
      },
      ...(deps.onDepth ? { onDepth: deps.onDepth } : {}),
    });
  }

  /** Set once the reconciler exists (the reconciler needs the queue to requeue). */
  bind(reconciler: Reconciler): void {
    this.#reconciler = reconciler;
  }

  /** The informer callback: map any object to the token keys it affects. */
  onChange(kind: Kind, obj: KubernetesObject, event: "add" | "update" | "delete"): void {
    if (event === "delete" && (kind === "GitHubApp" || kind === "ClusterGitHubApp"))
      this.#appSpecSeen.delete(`${kind}/${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`);
    if (kind === "GitHubAppToken" && event === "update") {
      this.#reconciler?.statusSeen(`${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`, obj);
    }
    if (kind === "GitHubAppToken" && !this.#tokenChanged(obj, event)) return;
    if (kind === "Secret" && this.#ownSecretWrite(obj, event)) return;
    for (const key of this.keysFor(kind, obj)) this.queue.add(key);
  }

  /** ghat added its finalizer to this GitHubAppToken, which is now at this resourceVersion. */
  tokenWritten(namespace: string, name: string, resourceVersion: string | undefined): void {
    if (!resourceVersion) return;
    this.#tokensWritten.set(`${namespace}/${name}`, resourceVersion);
    if (this.#tokensWritten.size > 100_000) this.#tokensWritten.clear();
  }

  /**
   * ghat starts to write this Secret. Its watch can show the write before the write's answer
   * arrives (they come over different connections): an event until then is held, and judged
   * by the answer's resourceVersion in `secretWritten`.
   */
  secretWriting(namespace: string, name: string): void {
    const id = `${namespace}/${name}`;
    const writing = this.#secretsWriting.get(id);
    if (writing) writing.writes++;
    else this.#secretsWriting.set(id, { writes: 1, early: undefined });
  }

  /**
   * ghat's write of this Secret is done: at this resourceVersion (the answer of its apply), or
   * failed (undefined). An event held meanwhile is the write's echo, or else reconciles now.
   */
  secretWritten(namespace: string, name: string, resourceVersion: string | undefined): void {
    const id = `${namespace}/${name}`;
    const writing = this.#secretsWriting.get(id);
    const early = writing?.early;
    if (writing) {
      writing.early = undefined;
      if (--writing.writes <= 0) this.#secretsWriting.delete(id);
    }
    if (early) {
      if (resourceVersion !== undefined && early.metadata?.resourceVersion === resourceVersion) return;
      for (const key of this.keysFor("Secret", early)) this.queue.add(key);
    }
    if (!resourceVersion) return;
    this.#secretsWritten.set(id, resourceVersion);
    // Entries go when their echo arrives; a write whose echo never came (the Secret was
    // replaced at once) must not stay forever.
    if (this.#secretsWritten.size > 100_000) this.#secretsWritten.clear();
  }

  #ownSecretWrite(obj: KubernetesObject, event: "add" | "update" | "delete"): boolean {
    const id = `${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
    const written = this.#secretsWritten.get(id);
    if (written === undefined) {
      // A write in flight: held until its answer. (Of two events, the later one is what ghat's
      // write left or what came after it; a delete is never held.)
      const writing = this.#secretsWriting.get(id);
      if (writing === undefined || event === "delete") return false;
      writing.early = obj;
      return true;
    }
    this.#secretsWritten.delete(id);
    return event !== "delete" && written === obj.metadata?.resourceVersion;
  }

  #tokenChanged(obj: KubernetesObject, event: "add" | "update" | "delete"): boolean {
    const id = `${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
    if (event === "delete") {
      this.#tokenSeen.delete(id);
      return true;
    }
    const m = obj.metadata;
    const marks = createHash("sha256")
      .update(JSON.stringify([m?.labels ?? {}, m?.annotations ?? {}]))
      .digest("base64url")
      .slice(0, 16);
    // ghat's own finalizer appearing needs no reconcile: ghat added it (this process, whose
    // watch may show it before the write's answer arrives, or the replica before it). Its
    // removal does: the finalizer is put back.
    const finalizers = m?.finalizers ?? [];
    const ours = finalizers.includes(finalizer);
    const others = ours ? finalizers.filter((f) => f !== finalizer) : finalizers;
    const base = `${m?.uid ?? ""}|${m?.generation ?? ""}|${m?.deletionTimestamp ?? ""}|${others.join(",")}|${marks}`;
    const before = this.#tokenSeen.get(id);
    this.#tokenSeen.set(id, `${base}${ours ? "+" : "-"}`);
    // The echo of ghat's own finalizer write: the reconcile that wrote it went on from there.
    const written = this.#tokensWritten.get(id);
    if (written !== undefined) {
      this.#tokensWritten.delete(id);
      if (event === "update" && written === m?.resourceVersion) return false;
    }
    if (event === "add" || before === undefined) return true;
    // `before` is the base it saw then, and whether ghat's finalizer was there (+) or not (-).
    return before.slice(0, -1) !== base || (before.endsWith("+") && !ours);
  }

  /** After a relist, re-check everything so deletes missed while disconnected are seen. */
  onResync(kind: Kind): void {
    if (kind === "GitHubAppToken") for (const key of this.#allTokenKeys()) this.queue.add(key);
  }

  keysFor(kind: Kind, obj: KubernetesObject): string[] {
    const ns = obj.metadata?.namespace ?? "";
    const name = obj.metadata?.name ?? "";
    switch (kind) {
      case "GitHubAppToken": {
        const app = (obj as TokenLike).spec?.appRef;
        const usesApp = this.#d.kube && (app?.kind ?? "GitHubApp") === "GitHubApp" && app?.name;
        return usesApp ? [`${ns}/${name}`, appKey(ns, app.name ?? "")] : [`${ns}/${name}`];
      }
      case "Secret": {
        const owner = obj.metadata?.labels?.[labels.token];
        return owner ? [`${ns}/${owner}`] : [];
      }
      case "GitHubApp":
        return [
          ...(this.#appChanged(kind, obj)
            ? this.#tokensUsing((t) => t.metadata?.namespace === ns && ref(t, "GitHubApp") === name)
            : []),
          ...(this.#d.kube ? [appKey(ns, name)] : []),
        ];
      case "ClusterGitHubApp":
        return this.#appChanged(kind, obj)
          ? this.#tokensUsing((t) => ref(t, "ClusterGitHubApp") === name)
          : [];
      case "Namespace":
        return this.#tokensUsing(
          (t) => t.metadata?.namespace === name && ref(t, "ClusterGitHubApp") !== undefined,
        );
      case "KeySecret": {
        const apps = this.#appsUsingKey(ns, name);
        return this.#tokensUsing((t) => {
          const kindRef = t.spec?.appRef?.kind ?? "GitHubApp";
          const appName = t.spec?.appRef?.name ?? "";
          return apps.has(
            `${kindRef}/${kindRef === "GitHubApp" ? (t.metadata?.namespace ?? "") : ""}/${appName}`,
          );
        });
      }
    }
  }

  async #process(key: string): Promise<void> {
    const app = parseAppKey(key);
    if (app) {
      await this.#appFinalizer(key, app.namespace, app.name);
      return;
    }
    const start = this.#d.clock.now();
    const outcome = await this.#reconciler?.reconcile(key);
    if (outcome?.forget) this.queue.forget(key);
    if (outcome?.requeueAt !== undefined) this.queue.addAt(key, outcome.requeueAt);
    const ms = this.#d.clock.now() - start;
    this.#d.onReconciled?.(ms);
    this.#d.log.trace({ key, ms }, "Reconciled");
  }

  async #appFinalizer(key: string, namespace: string, name: string): Promise<void> {
    const kube = this.#d.kube;
    if (!kube) return;
    const cache = this.#d.cache;
    try {
      await reconcileAppFinalizer(
        {
          app: (ns, n) => cache.app("GitHubApp", ns, n),
          tokens: () => cache.tokens(),
          kube,
          written: this.#appFinalizersWritten,
        },
        namespace,
        name,
      );
    } catch (err) {
      this.#d.log.warn({ err, namespace, name }, "Failed to update the finalizer of a GitHubApp");
      this.queue.addAt(key, this.#d.clock.now() + 10_000);
    }
  }

  #allTokenKeys(): string[] {
    return this.#d.cache.tokens().map((t) => `${t.metadata?.namespace ?? ""}/${t.metadata?.name ?? ""}`);
  }

  #tokensUsing(pred: (t: TokenLike) => boolean): string[] {
    return (this.#d.cache.tokens() as TokenLike[])
      .filter(pred)
      .map((t) => `${t.metadata?.namespace ?? ""}/${t.metadata?.name ?? ""}`);
  }

  /** True unless the App's generation and deletion state are what this process saw last. */
  #appChanged(kind: Kind, obj: KubernetesObject): boolean {
    const id = `${kind}/${obj.metadata?.namespace ?? ""}/${obj.metadata?.name ?? ""}`;
    const state = `${obj.metadata?.generation ?? ""}|${obj.metadata?.deletionTimestamp ? "deleting" : ""}|${obj.metadata?.uid ?? ""}`;
    if (this.#appSpecSeen.get(id) === state) return false;
    this.#appSpecSeen.set(id, state);
    // A deleted App's entry goes with it: bounded by the Apps that exist.
    if (this.#appSpecSeen.size > 100_000) this.#appSpecSeen.clear();
    return true;
  }

  /** Apps (as kind/namespace/name) whose key, Vault token or HSM PIN is the Secret namespace/name. */
  #appsUsingKey(namespace: string, name: string): Set<string> {
    const out = new Set<string>();
    const cache = this.#d.cache;
    for (const t of cache.tokens() as TokenLike[]) {
      const kind = t.spec?.appRef?.kind === "ClusterGitHubApp" ? "ClusterGitHubApp" : "GitHubApp";
      const appNs = kind === "GitHubApp" ? (t.metadata?.namespace ?? "") : "";
      const keyNs = kind === "GitHubApp" ? appNs : this.#d.operatorNamespace;
      const app = cache.app(kind, appNs, t.spec?.appRef?.name ?? "") as AppLike | undefined;
      if (keyNs === namespace && app !== undefined && appSecretName(app.spec) === name) {
        out.add(`${kind}/${appNs}/${app.metadata?.name ?? ""}`);
      }
    }
    return out;
  }
}

function ref(t: TokenLike, kind: "GitHubApp" | "ClusterGitHubApp"): string | undefined {
  const k = t.spec?.appRef?.kind ?? "GitHubApp";
  return k === kind ? t.spec?.appRef?.name : undefined;
}

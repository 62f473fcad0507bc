import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from "@kubernetes/client-node";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";

export interface InformerOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Watch path, e.g. /api/v1/secrets or /apis/ghat.dev/v1alpha1/githubapptokens. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  clock: Clock;
  log: Logger;
  /** Called with every added, updated or deleted object. */
  onChange: (obj: T, event: "add" | "update" | "delete") => void;
  /** Called after each (re)list, so missed deletes can be reconciled. */
  onResync?: () => void;
  onError?: (err: unknown) => void;
}

/**
 * A client-node ListWatch that is restarted with backoff when it stops on an error
 * (client-node only relists by itself on 410 Gone). `synced` resolves after the first list.
 */
export class Informer<T extends KubernetesObject> {
  readonly #opts: InformerOptions<T>;
  readonly #lw: ListWatch<T>;
  #stopped = false;
  #failures = 0;
  #cancelRestart: (() => void) | undefined;
  #synced = false;
  #syncWaiters: (() => void)[] = [];

  constructor(options: InformerOptions<T>) {
    this.#opts = options;
    this.#lw = new ListWatch<T>(
      options.path,
      new Watch(options.kubeConfig),
      async () => {
        const list = await options.list();
        for (const item of list.items) trim(item);
        this.#failures = 0;
        // ListWatch fills its cache right after this promise settles; setImmediate runs after that.
        setImmediate(() => {
          this.#markSynced();
          options.onResync?.();
        });
        return list;
      },
      false,
      options.labelSelector,
      options.fieldSelector,
    );
    // The cache holds the very objects these handlers get: trimming here trims the cache.
    this.#lw.on("add", (o) => options.onChange(trim(o), "add"));
    this.#lw.on("update", (o) => options.onChange(trim(o), "update"));
    this.#lw.on("delete", (o) => options.onChange(o, "delete"));
    this.#lw.on("error", (err) => this.#restart(err));
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** Starts listing and watching; errors restart it with backoff. */
  start(): void {
    this.#stopped = false;
    this.#lw.start().catch((err: unknown) => this.#restart(err));
  }

  /** Resolves once the first list has filled the cache. */
  waitForSync(): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise((resolve) => this.#syncWaiters.push(resolve));
  }

  #markSynced(): void {
    this.#synced = true;
    for (const resolve of this.#syncWaiters.splice(0)) resolve();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#cancelRestart?.();
    await this.#lw.stop();
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#lw.get(name, namespace);
  }

  list(namespace?: string): readonly T[] {
    return this.#lw.list(namespace);
  }

  #restart(err: unknown): void {
    if (this.#stopped) return;
    this.#failures++;
    this.#opts.onError?.(err);
    const delay = Math.min(30_000, 500 * 2 ** Math.min(6, this.#failures - 1));
    const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
    const status = e?.code ?? e?.statusCode;
    const level = this.#failures > 3 ? "warn" : "info";
    this.#opts.log[level](
      {
        path: this.#opts.path,
        failures: this.#failures,
        retryInMs: delay,
        status,
        reason: String(e?.message ?? err)
          .split("\n")[0]
          ?.slice(0, 200),
      },
      "Restarting informer after error",
    );
    this.#cancelRestart?.();
    this.#cancelRestart = this.#opts.clock.setTimer(delay, () => {
      if (this.#stopped) return;
      this.#lw.start().catch((e: unknown) => this.#restart(e));
    });
  }
}

/**
 * Drops metadata.managedFields, which ghat never reads and which is often the largest part
 * of an object (controller-runtime's caches do the same with a transform).
 */
function trim<T extends KubernetesObject>(o: T): T {
  if (o.metadata?.managedFields) delete o.metadata.managedFields;
  return o;
}

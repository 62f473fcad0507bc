import { STATUS_CODES } from "node:http";
import type { Readable } from "node:stream";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import type { Clock } from "../clock.ts";
import { GhatError } from "../core/errors.ts";
import type { Logger } from "../log.ts";
import { observerOf, resourceOf } from "./instrument.ts";
import { KubeRest, maxResponseBytes, readBounded } from "./rest.ts";

/** Accept headers that make the API server send only metadata (no Secret data, no spec). */
export const metadataListAccept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
export const metadataWatchAccept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

export interface InformerOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Collection path, e.g. /api/v1/secrets or /apis/ghat.dev/v1alpha1/githubapptokens. */
  path: string;
  /** Names the cache in messages ("secrets", "githubapps in ns"); defaults to the path. */
  resource?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** List and watch PartialObjectMetadata: the cache holds metadata only. */
  metadataOnly?: boolean;
  /** Items per list page (client-go's reflector pages by 500). */
  pageSize?: number;
  /** Deadline of each list page request; a list that hangs is abandoned and retried. */
  listTimeoutMs?: number;
  /**
   * A watch that delivers no event and no bookmark for this long (plus up to 10% jitter) is
   * restarted; it is also the watch's server-side timeoutSeconds.
   */
  watchIdleMs?: number;
  /** Statuses after which retrying cannot help (400 on a field selector): the informer stops. */
  fatalStatuses?: readonly number[];
  /** Backoff bounds of failed lists and watches. */
  backoffMs?: { initial: number; max: number };
  clock: Clock;
  log: Logger;
  random?: () => number;
  /** Called with every added, updated or deleted object. */
  onChange: (obj: T, event: "add" | "update" | "delete") => void;
  /** Called after each (re)list, so missed deletes can be reconciled. */
  onResync?: () => void;
  onError?: (err: unknown) => void;
}

interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T & { code?: number; message?: string; reason?: string };
}

/** A 410 Gone: the resourceVersion is too old, list again. */
class Expired extends Error {}

/**
 * A reflector in the manner of client-go's: lists in pages (each page with its own deadline),
 * then watches from the list's resourceVersion with bookmarks, restarts a watch that goes quiet,
 * relists on 410 Gone, and retries everything else with capped exponential backoff. Its own
 * code rather than client-node's ListWatch, which has no list timeout, no paging, no bookmarks
 * and no way to ask for metadata only.
 * @see https://github.com/kubernetes/client-go/blob/master/tools/cache/reflector.go
 */
export class Informer<T extends KubernetesObject> {
  readonly #o: InformerOptions<T>;
  readonly #store = new Map<string, T>();
  /** The store by namespace, so list(namespace) does not scan every object. */
  readonly #byNamespace = new Map<string, Map<string, T>>();
  readonly #resource: string;
  #running = false;
  #stopped = false;
  #failures = 0;
  #synced = false;
  #fatal: GhatError | undefined;
  #syncWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  /** Aborts the request in flight and wakes a backoff sleep. */
  #abort: AbortController | undefined;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: InformerOptions<T>) {
    this.#o = options;
    this.#resource = options.resource ?? options.path;
  }

  /** True once the first list has filled the cache. */
  get synced(): boolean {
    return this.#synced;
  }

  /** The error that stopped this informer for good (a 400 on its selector), if any. */
  get failed(): GhatError | undefined {
    return this.#fatal;
  }

  get resource(): string {
    return this.#resource;
  }

  /** Starts listing and watching in the background; errors are retried with backoff. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#stopped = false;
    this.#loop = this.#run();
  }

  /**
   * Resolves once the first list has filled the cache. With a deadline, rejects with a
   * GhatError "Timeout" after it; rejects at once when the informer failed for good or stopped.
   */
  waitForSync(timeoutMs?: number): Promise<void> {
    if (this.#synced) return Promise.resolve();
    if (this.#fatal) return Promise.reject(this.#fatal);
    return new Promise<void>((resolve, reject) => {
      let cancel: (() => void) | undefined;
      const waiter = {
        resolve: () => {
          cancel?.();
          resolve();
        },
        reject: (e: unknown) => {
          cancel?.();
          reject(e);
        },
      };
      this.#syncWaiters.push(waiter);
      if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) {
        cancel = this.#o.clock.setTimer(timeoutMs, () => {
          this.#syncWaiters = this.#syncWaiters.filter((w) => w !== waiter);
          reject(
            new GhatError(
              "Timeout",
              `cache of ${this.#resource} not synced after ${Math.round(timeoutMs / 1000)}s`,
            ),
          );
        });
      }
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#running = false;
    this.#abort?.abort();
    this.#wake?.();
    this.#rejectWaiters(new GhatError("Timeout", `cache of ${this.#resource} stopped before it synced`));
    await this.#loop;
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#store.get(keyOf(namespace, name));
  }

  list(namespace?: string): readonly T[] {
    if (namespace === undefined) return [...this.#store.values()];
    return [...(this.#byNamespace.get(namespace)?.values() ?? [])];
  }

  #put(key: string, o: T): void {
    this.#store.set(key, o);
    const ns = o.metadata?.namespace ?? "";
    const m = this.#byNamespace.get(ns) ?? new Map<string, T>();
    this.#byNamespace.set(ns, m);
    m.set(key, o);
  }

  #remove(key: string): void {
    const o = this.#store.get(key);
    if (!o) return;
    this.#store.delete(key);
    const ns = o.metadata?.namespace ?? "";
    const m = this.#byNamespace.get(ns);
    m?.delete(key);
    if (m?.size === 0) this.#byNamespace.delete(ns);
  }

  get size(): number {
    return this.#store.size;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      try {
        const rv = await this.#list();
        this.#failures = 0;
        await this.#watch(rv);
      } catch (err) {
        if (this.#stopped) break;
        if (err instanceof Expired) continue;
        const status = statusOf(err);
        if (status !== undefined && this.#o.fatalStatuses?.includes(status)) {
          this.#fail(err, status);
          break;
        }
        await this.#backoff(err, status);
      }
    }
  }

  #fail(err: unknown, status: number): void {
    this.#fatal = new GhatError(
      "InvalidSpec",
      `the API server refused to list ${this.#resource}: HTTP ${status}${messageOf(err) ? `: ${messageOf(err)}` : ""}`,
      { status },
    );
    this.#o.onError?.(err);
    this.#o.log.warn({ path: this.#o.path, status }, "Stopped informer after a permanent error");
    this.#running = false;
    this.#stopped = true;
    this.#rejectWaiters(this.#fatal);
  }

  async #backoff(err: unknown, status: number | undefined): Promise<void> {
    this.#failures++;
    this.#o.onError?.(err);
    const { initial, max } = this.#o.backoffMs ?? { initial: 500, max: 30_000 };
    const base = Math.min(max, initial * 2 ** Math.min(16, this.#failures - 1));
    const delay = Math.round(base * (0.8 + 0.4 * (this.#o.random ?? Math.random)()));
    this.#o.log[this.#failures > 3 ? "warn" : "info"](
      { path: this.#o.path, failures: this.#failures, retryInMs: delay, status, reason: messageOf(err) },
      "Restarting informer after error",
    );
    await new Promise<void>((resolve) => {
      const cancel = this.#o.clock.setTimer(delay, () => {
        this.#wake = undefined;
        resolve();
      });
      this.#wake = () => {
        cancel();
        this.#wake = undefined;
        resolve();
      };
    });
  }

  /** Lists every page, then replaces the store, reporting the differences. Returns the list's resourceVersion. */
  async #list(): Promise<string> {
    const fresh = new Map<string, T>();
    let token: string | undefined;
    let rv = "";
    do {
      const query: Record<string, string | undefined> = {
        limit: String(this.#o.pageSize ?? 500),
        continue: token,
        labelSelector: this.#o.labelSelector,
        fieldSelector: this.#o.fieldSelector,
      };
      const timeoutMs = this.#o.listTimeoutMs ?? 30_000;
      const body = (await this.#request(
        query,
        this.#o.metadataOnly ? metadataListAccept : undefined,
        timeoutMs,
        "list",
      )) as {
        items?: T[];
        metadata?: { resourceVersion?: string; continue?: string };
      };
      for (const item of body.items ?? []) {
        trim(item);
        fresh.set(keyOf(item.metadata?.namespace, item.metadata?.name ?? ""), item);
      }
      rv = body.metadata?.resourceVersion ?? rv;
      token = body.metadata?.continue || undefined;
    } while (token !== undefined && !this.#stopped);
    if (this.#stopped) return rv;
    const old = new Map(this.#store);
    this.#store.clear();
    this.#byNamespace.clear();
    for (const [k, v] of fresh) this.#put(k, v);
    for (const [k, v] of fresh) {
      const before = old.get(k);
      if (!before) this.#o.onChange(v, "add");
      else if (before.metadata?.resourceVersion !== v.metadata?.resourceVersion)
        this.#o.onChange(v, "update");
    }
    for (const [k, v] of old) if (!fresh.has(k)) this.#o.onChange(v, "delete");
    if (!this.#synced) {
      this.#synced = true;
      for (const w of this.#syncWaiters.splice(0)) w.resolve();
    }
    this.#o.onResync?.();
    return rv;
  }

  /** Watches from `rv` until it expires (410: relist) or fails; a quiet or closed watch is reopened. */
  async #watch(startRv: string): Promise<void> {
    let rv = startRv;
    while (!this.#stopped) {
      const idle = Math.round(
        (this.#o.watchIdleMs ?? 300_000) * (1 + 0.1 * (this.#o.random ?? Math.random)()),
      );
      const query: Record<string, string | undefined> = {
        watch: "true",
        allowWatchBookmarks: "true",
        resourceVersion: rv,
        timeoutSeconds: String(Math.max(1, Math.ceil(idle / 1000))),
        labelSelector: this.#o.labelSelector,
        fieldSelector: this.#o.fieldSelector,
      };
      await this.#stream(query, idle, (event) => {
        if (event.type === "ERROR") {
          if (event.object.code === 410) throw new Expired();
          throw Object.assign(new Error(event.object.message ?? "watch error"), {
            statusCode: event.object.code,
          });
        }
        const o = event.object;
        const newRv = o.metadata?.resourceVersion;
        if (newRv) rv = newRv;
        if (event.type === "BOOKMARK") return;
        trim(o);
        const k = keyOf(o.metadata?.namespace, o.metadata?.name ?? "");
        if (event.type === "DELETED") {
          this.#remove(k);
          this.#o.onChange(o, "delete");
        } else {
          const existed = this.#store.has(k);
          this.#put(k, o);
          this.#o.onChange(o, existed ? "update" : "add");
        }
      });
      this.#failures = 0;
    }
  }

  /** One GET with a deadline over the whole exchange (headers and body). */
  async #request(
    query: Record<string, string | undefined>,
    accept: string | undefined,
    timeoutMs: number,
    verb: string,
  ): Promise<unknown> {
    // Counted with the REST client's requests, as "list" (its GETs of one object are "get").
    observerOf(this.#o.kubeConfig)?.("list", resourceOf(this.#o.path));
    const abort = new AbortController();
    this.#abort = abort;
    let timedOut = false;
    const cancel = this.#o.clock.setTimer(timeoutMs, () => {
      timedOut = true;
      abort.abort();
    });
    try {
      const res = await KubeRest.for(this.#o.kubeConfig).open("GET", {
        path: this.#o.path,
        query,
        ...(accept ? { accept } : {}),
        signal: abort.signal,
        idleMs: 0,
      });
      const text = await readBounded(res, `${verb} of ${this.#resource}`);
      if (res.statusCode === 410) throw new Expired();
      if (res.statusCode !== 200) throw httpError(res.statusCode ?? 0, text);
      return JSON.parse(text) as unknown;
    } catch (err) {
      if (timedOut)
        throw new GhatError(
          "Timeout",
          `${verb} of ${this.#resource} timed out after ${Math.round(timeoutMs / 1000)}s`,
        );
      throw err;
    } finally {
      cancel();
      if (this.#abort === abort) this.#abort = undefined;
    }
  }

  /**
   * One watch request; resolves when the server or the idle timer ends it. The body is split
   * into lines here, each handled as it arrives (no readline and no promise per event), and
   * the idle timer is one timer re-armed only when it fires early, not one per event.
   */
  async #stream(
    query: Record<string, string | undefined>,
    idleMs: number,
    onEvent: (e: WatchEvent<T>) => void,
  ): Promise<void> {
    const abort = new AbortController();
    this.#abort = abort;
    const clock = this.#o.clock;
    let heard = clock.now();
    let cancel = (): void => undefined;
    const arm = (ms: number): void => {
      cancel = clock.setTimer(ms, () => {
        const quiet = clock.now() - heard;
        if (quiet >= idleMs) abort.abort();
        else arm(idleMs - quiet);
      });
    };
    arm(idleMs);
    let input: Readable | undefined;
    try {
      const res = await KubeRest.for(this.#o.kubeConfig).open("GET", {
        path: this.#o.path,
        query,
        ...(this.#o.metadataOnly ? { accept: metadataWatchAccept } : {}),
        signal: abort.signal,
        idleMs: 0,
      });
      input = res;
      // Aborting (idle timer, stop, a thrown event) errors the stream: that is handled here.
      input.on("error", () => undefined);
      if (res.statusCode === 410) throw new Expired();
      if (res.statusCode !== 200)
        throw httpError(res.statusCode ?? 0, await readBounded(res, `watch of ${this.#resource}`));
      res.setEncoding("utf8");
      const handle = (line: string): void => {
        if (!line.trim()) return;
        let event: WatchEvent<T>;
        try {
          event = JSON.parse(line) as WatchEvent<T>;
        } catch {
          return;
        }
        onEvent(event);
      };
      // The start of a line whose end has not arrived yet, in pieces (joined once, at its end).
      const parts: string[] = [];
      let partsLength = 0;
      for await (const chunk of res as AsyncIterable<string>) {
        heard = clock.now();
        let from = 0;
        for (let end = chunk.indexOf("\n"); end !== -1; end = chunk.indexOf("\n", from)) {
          let line = chunk.slice(from, end);
          from = end + 1;
          if (parts.length > 0) {
            parts.push(line);
            line = parts.join("");
            parts.length = 0;
            partsLength = 0;
          }
          handle(line);
        }
        if (from < chunk.length) {
          parts.push(from === 0 ? chunk : chunk.slice(from));
          partsLength += chunk.length - from;
          // One event is one object: an API server's objects are far below this.
          if (partsLength > maxResponseBytes)
            throw new Error(
              `watch of ${this.#resource}: an event is larger than ${maxResponseBytes / 2 ** 20} MiB`,
            );
        }
      }
      // A last line without its newline is handled like any other (cut short, it does not parse).
      if (parts.length > 0) handle(parts.join(""));
    } catch (err) {
      // The idle timer or stop() ended the watch: reopen it (or stop), not an error.
      if (abort.signal.aborted && !(err instanceof Expired)) return;
      throw err;
    } finally {
      cancel();
      input?.destroy();
      abort.abort();
      if (this.#abort === abort) this.#abort = undefined;
    }
  }

  #rejectWaiters(err: unknown): void {
    for (const w of this.#syncWaiters.splice(0)) w.reject(err);
  }
}

function keyOf(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

function httpError(status: number, body: string): Error {
  let message = STATUS_CODES[status] ?? "HTTP error";
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === "string") message = parsed.message;
  } catch {
    // not JSON: keep the status text
  }
  return Object.assign(new Error(message.slice(0, 300)), { statusCode: status });
}

function statusOf(err: unknown): number | undefined {
  const e = err as { statusCode?: unknown; status?: unknown } | undefined;
  const s = e?.statusCode ?? e?.status;
  return typeof s === "number" ? s : undefined;
}

function messageOf(err: unknown): string {
  return (
    String((err as { message?: unknown } | undefined)?.message ?? err)
      .split("\n")[0]
      ?.slice(0, 200) ?? ""
  );
}

/**
 * Drops metadata.managedFields and kubectl's last-applied-configuration annotation (the whole
 * object again, for everything applied with `kubectl apply`): ghat reads neither, and they
 * are often the largest part of an object (controller-runtime's caches drop managedFields
 * with a transform too). Copies without them, not `delete`: V8 turns an object a property was
 * deleted from into a dictionary, several times the size (for every cached object).
 */
function trim<T extends KubernetesObject>(o: T): T {
  internShared(o);
  const m = o.metadata;
  if (!m) return o;
  if (m.annotations?.[lastApplied] !== undefined) {
    const { [lastApplied]: _, ...annotations } = m.annotations;
    m.annotations = annotations;
  }
  if (m.managedFields) o.metadata = withoutManagedFields(m);
  return o;
}

/**
 * Every cached object spells the same few strings again (its apiVersion and kind, ghat's
 * finalizer, owner kinds, condition types, reasons and messages): JSON.parse makes a copy
 * per object, about 300 bytes per token. Each is replaced by one shared copy. The table only
 * holds short strings and stops growing at `maxInterned`: a tenant writing unique values
 * costs it nothing but the lookups.
 */
function internShared(o: KubernetesObject): void {
  if (o.apiVersion) o.apiVersion = intern(o.apiVersion);
  if (o.kind) o.kind = intern(o.kind);
  const m = o.metadata;
  if (m?.finalizers) m.finalizers = m.finalizers.map(intern);
  for (const ref of m?.ownerReferences ?? []) {
    ref.apiVersion = intern(ref.apiVersion);
    ref.kind = intern(ref.kind);
  }
  const conditions = (o as { status?: { conditions?: unknown } }).status?.conditions;
  if (!Array.isArray(conditions)) return;
  for (const c of conditions as Record<string, unknown>[]) {
    for (const k of ["type", "status", "reason", "message"]) {
      const v = c[k];
      if (typeof v === "string") c[k] = intern(v);
    }
  }
}

const interned = new Map<string, string>();
const maxInterned = 4096;
const maxInternedLength = 100;

/** How many strings are shared (for tests). */
export function internedCount(): number {
  return interned.size;
}

export function intern(s: string): string {
  if (s.length > maxInternedLength) return s;
  const shared = interned.get(s);
  if (shared !== undefined) return shared;
  if (interned.size < maxInterned) interned.set(s, s);
  return s;
}

/** The metadata without managedFields, as a new object (see trim). */
export function withoutManagedFields<M extends { managedFields?: unknown }>(m: M): Omit<M, "managedFields"> {
  const { managedFields: _, ...rest } = m;
  return rest;
}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration";

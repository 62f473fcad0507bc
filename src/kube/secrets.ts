/** A Secret as the reconciler reads it (data base64-encoded): the shape of ObservedSecretRaw. */
export interface SecretView {
  type?: string | undefined;
  metadata?: {
    name?: string | undefined;
    namespace?: string | undefined;
    labels?: Record<string, string> | undefined;
    annotations?: Record<string, string> | undefined;
    ownerReferences?: { uid: string; kind?: string }[] | undefined;
    resourceVersion?: string | undefined;
  };
  data?: Record<string, string> | undefined;
}

export interface SecretDataCacheOptions {
  /** Secrets whose decoded data is larger are read each time, never kept. */
  maxEntryBytes?: number;
  /** Bound on all kept data; the least recently used entries go first. */
  maxTotalBytes?: number;
}

interface Entry {
  resourceVersion: string;
  type: string | undefined;
  data: Record<string, string>;
  bytes: number;
}

/**
 * The data of the Secrets ghat itself writes, kept per (namespace, name, resourceVersion) so a
 * reconcile does not GET them every time. The managed-Secret informer holds metadata only
 * (anyone may label a Secret as managed by ghat: caching their data would let them fill the heap),
 * so only Secrets owned by a GitHubAppToken and at most `maxEntryBytes` large are kept, and the
 * whole is bounded. An entry is dropped as soon as the metadata cache sees another
 * resourceVersion or a delete.
 */
export class SecretDataCache {
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntry: number;
  readonly #maxTotal: number;
  #total = 0;

  constructor(options: SecretDataCacheOptions = {}) {
    this.#maxEntry = options.maxEntryBytes ?? 512 * 1024;
    this.#maxTotal = options.maxTotalBytes ?? 64 * 1024 * 1024;
  }

  get(namespace: string, name: string, resourceVersion: string): Entry | undefined {
    const id = `${namespace}/${name}`;
    const e = this.#entries.get(id);
    if (!e || e.resourceVersion !== resourceVersion) return undefined;
    // Map order is insertion order: re-inserting makes it the most recently used.
    this.#entries.delete(id);
    this.#entries.set(id, e);
    return e;
  }

  /** Keeps a Secret's data when it may be kept; returns whether it was. */
  set(secret: SecretView): boolean {
    const namespace = secret.metadata?.namespace;
    const name = secret.metadata?.name;
    const rv = secret.metadata?.resourceVersion;
    if (!namespace || !name || !rv || !ownedByToken(secret)) return false;
    const data = secret.data ?? {};
    const bytes = dataBytes(data);
    if (bytes > this.#maxEntry) return false;
    this.drop(namespace, name);
    this.#entries.set(`${namespace}/${name}`, { resourceVersion: rv, type: secret.type, data, bytes });
    this.#total += bytes;
    for (const [id, e] of this.#entries) {
      if (this.#total <= this.#maxTotal) break;
      this.#entries.delete(id);
      this.#total -= e.bytes;
    }
    return true;
  }

  /** Forgets a Secret's data, unless it is of `keepResourceVersion`. */
  drop(namespace: string, name: string, keepResourceVersion?: string): void {
    const id = `${namespace}/${name}`;
    const e = this.#entries.get(id);
    if (!e || e.resourceVersion === keepResourceVersion) return;
    this.#entries.delete(id);
    this.#total -= e.bytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  get bytes(): number {
    return this.#total;
  }
}

/** Whether a GitHubAppToken owns the Secret (what ghat sets on every Secret it writes). */
export function ownedByToken(secret: SecretView): boolean {
  return (secret.metadata?.ownerReferences ?? []).some((r) => r.kind === "GitHubAppToken");
}

/** Decoded size of base64 data values, plus their keys. */
export function dataBytes(data: Record<string, string>): number {
  let n = 0;
  for (const [k, v] of Object.entries(data)) n += k.length + Math.floor((v.length * 3) / 4);
  return n;
}

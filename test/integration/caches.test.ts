import type { AddressInfo } from "node:net";
import { connect, createServer, type Server, type Socket } from "node:net";
import { Writable } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/clock.ts";
import { ClusterCache, tokenSource } from "../../src/kube/cache.ts";
import { createLogger } from "../../src/log.ts";
import { kubeConfig, newNamespace } from "../support/cluster.ts";

const log = createLogger({ level: "silent", destination: new Writable({ write: (_c, _e, cb) => cb() }) });
const group = "ghat.dev";
const version = "v1alpha1";

setFlagsFromString("--expose-gc");
const gc =
  (runInNewContext('typeof gc === "function" ? gc : undefined') as (() => void) | undefined) ??
  (() => undefined);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function cacheFor(namespace: string, overrides: Partial<ConstructorParameters<typeof ClusterCache>[0]> = {}) {
  const cache = new ClusterCache({
    kubeConfig: kubeConfig(),
    clock: systemClock,
    log,
    namespaces: [namespace],
    operatorNamespace: "ghat-system",
    onChange: () => undefined,
    ...overrides,
  });
  cleanups.push(() => cache.stop());
  return cache;
}

const core = () => kubeConfig().makeApiClient(CoreV1Api);
const custom = () => kubeConfig().makeApiClient(CustomObjectsApi);

/** In batches, so 2 shared cores are not swamped. */
async function inBatches<T>(items: T[], size: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}

describe("the managed-Secret cache against a real API server", () => {
  it("holds only metadata of 150 large Secrets anyone labelled as ghat's, yet reads an owned Secret's data", async () => {
    const ns = await newNamespace("flood");
    const blob = Buffer.alloc(100 * 1024, 7).toString("base64");
    await inBatches([...Array(150).keys()], 15, (i) =>
      core().createNamespacedSecret({
        namespace: ns,
        body: {
          metadata: { name: `flood-${i}`, labels: { "app.kubernetes.io/managed-by": "ghat" } },
          data: { blob },
        },
      }),
    );
    const token = (await custom().createNamespacedCustomObject({
      group,
      version,
      namespace: ns,
      plural: "githubapptokens",
      body: {
        apiVersion: `${group}/${version}`,
        kind: "GitHubAppToken",
        metadata: { name: "owner" },
        spec: {
          appRef: { kind: "GitHubApp", name: "app" },
          installation: { owner: "acme" },
          permissions: { contents: "read" },
          secrets: [{ name: "owned", format: "token" }],
        },
      },
    })) as { metadata: { uid: string } };
    await core().createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: {
          name: "owned",
          labels: { "app.kubernetes.io/managed-by": "ghat" },
          ownerReferences: [
            {
              apiVersion: `${group}/${version}`,
              kind: "GitHubAppToken",
              name: "owner",
              uid: token.metadata.uid,
            },
          ],
        },
        data: { token: Buffer.from("ghs_example").toString("base64") },
      },
    });

    gc();
    const before = process.memoryUsage().heapUsed;
    const cache = cacheFor(ns);
    await cache.start(60_000);
    gc();
    const grown = process.memoryUsage().heapUsed - before;

    const cached = [...Array(150).keys()].map((i) => cache.managedSecretMetadata(ns, `flood-${i}`));
    expect(cached.every((s) => s !== undefined && s.data === undefined)).toBe(true);
    // 150 × 100 KiB is 15 MiB of data (20 MiB as base64 text): metadata of 151 Secrets is far less.
    expect(JSON.stringify(cached).length).toBeLessThan(300 * 1024);
    expect(grown, `heap grew by ${grown} bytes`).toBeLessThan(8 * 1024 * 1024);

    const source = tokenSource(cache);
    const owned = await source.secret(ns, "owned");
    expect(owned?.type).toBe("Opaque");
    expect(Buffer.from(owned?.data?.token ?? "", "base64").toString()).toBe("ghs_example");
    expect(cache.secretDataCached().entries).toBe(1);
    // A foreign (unowned) flood Secret is returned with its data but not kept.
    expect((await source.secret(ns, "flood-3"))?.data?.blob).toHaveLength(blob.length);
    expect(cache.secretDataCached().entries).toBe(1);

    // A change of the owned Secret drops the kept data; the next read sees the new value.
    await core().patchNamespacedSecret(
      {
        namespace: ns,
        name: "owned",
        body: { data: { token: Buffer.from("ghs_other").toString("base64") } },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await expect.poll(() => cache.secretDataCached().entries, { timeout: 15_000 }).toBe(0);
    const again = await source.secret(ns, "owned");
    expect(Buffer.from(again?.data?.token ?? "", "base64").toString()).toBe("ghs_other");
  });
});

/** A TCP proxy to the API server that, while stalled, accepts connections and sends nothing. */
async function stallingProxy(target: URL) {
  let stalled = true;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => undefined);
    if (stalled) return; // swallow the TLS handshake: the request hangs
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(upstream);
    upstream.on("close", () => sockets.delete(upstream));
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    resume: () => {
      stalled = false;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe("list timeouts against a real API server", () => {
  it("a list through a proxy that stalls times out, and the cache syncs once the proxy answers", async () => {
    const ns = await newNamespace("stall");
    const direct = kubeConfig();
    const server = new URL(direct.getCurrentCluster()?.server ?? "");
    const proxy = await stallingProxy(server);
    cleanups.push(() => proxy.close());
    const kc = kubeConfig();
    // The API server's certificate is for 127.0.0.1: only the port changes.
    kc.loadFromOptions({
      clusters: kc.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${proxy.port}` })),
      users: kc.users,
      contexts: kc.contexts,
      currentContext: kc.currentContext,
    });
    const cache = cacheFor(ns, { kubeConfig: kc, listTimeoutMs: 1_000 });
    const started = cache.start();
    started.catch(() => undefined);
    const waited = await cache.waitForSync(3_000).catch((e: unknown) => e);
    expect(waited).toMatchObject({ code: "Timeout", message: expect.stringMatching(/not synced after 3s/) });
    expect(cache.synced).toBe(false);
    proxy.resume();
    await cache.waitForSync(30_000);
    expect(cache.synced).toBe(true);
    await started;
  });
});

describe("key-Secret watches against a real API server", () => {
  it("close when their App's key name changes or the App goes, so the count goes back to zero", async () => {
    const ns = await newNamespace("keys");
    const app = (key: string) => ({
      apiVersion: `${group}/${version}`,
      kind: "GitHubApp",
      metadata: { name: "app", namespace: ns },
      spec: { appId: 1, privateKeySecretRef: { name: key, key: "pem" }, baseUrl: "https://api.github.com" },
    });
    await custom().createNamespacedCustomObject({
      group,
      version,
      namespace: ns,
      plural: "githubapps",
      body: app("key-0"),
    });
    const cache = cacheFor(ns, { keySyncTimeoutMs: 20_000 });
    await cache.start(60_000);
    await core().createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "key-0" }, data: { pem: "eA==" } },
    });
    expect(await cache.keySecret(ns, "key-0")).toEqual({ pem: "eA==" });
    expect(cache.keySecretWatches(ns)).toBe(1);
    for (let i = 1; i <= 15; i++) {
      await custom().patchNamespacedCustomObject(
        {
          group,
          version,
          namespace: ns,
          plural: "githubapps",
          name: "app",
          body: { spec: { privateKeySecretRef: { name: `key-${i}`, key: "pem" } } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
      await expect
        .poll(
          () =>
            (cache.app("GitHubApp", ns, "app") as { spec?: { privateKeySecretRef?: { name?: string } } })
              ?.spec?.privateKeySecretRef?.name,
          { timeout: 15_000 },
        )
        .toBe(`key-${i}`);
      expect(await cache.keySecret(ns, `key-${i}`)).toBeUndefined();
      expect(cache.keySecretWatches(ns)).toBe(1);
    }
    await custom().deleteNamespacedCustomObject({
      group,
      version,
      namespace: ns,
      plural: "githubapps",
      name: "app",
    });
    await expect.poll(() => cache.keySecretWatches(ns), { timeout: 15_000 }).toBe(0);
  });
});

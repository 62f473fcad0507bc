import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../../src/clock.ts";
import { ClusterCache, tokenSource } from "../../../src/kube/cache.ts";
import { SecretDataCache } from "../../../src/kube/secrets.ts";
import { fakeApi, json, log, openWatch } from "./fakeapi.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const owner = [{ apiVersion: "ghat.dev/v1alpha1", kind: "GitHubAppToken", name: "t", uid: "u1" }];
const b64 = (bytes: number) => Buffer.alloc(bytes, 1).toString("base64");

function app(name: string, key: string, rv: string) {
  return {
    apiVersion: "ghat.dev/v1alpha1",
    kind: "GitHubApp",
    metadata: { name, namespace: "ns", resourceVersion: rv },
    spec: { appId: 1, privateKeySecretRef: { name: key, key: "pem" } },
  };
}

/** A fake API server with one GitHubApp whose watch the test drives, and Secrets to GET. */
async function world() {
  const appWatches: ((e: unknown) => void)[] = [];
  const secretWatches: ((e: unknown) => void)[] = [];
  const secrets = new Map<string, Record<string, unknown>>();
  const gets: string[] = [];
  const api = await fakeApi((_req, res: ServerResponse, seen) => {
    const watch = seen.query.get("watch") === "true";
    if (seen.path.endsWith("/githubapps")) {
      if (watch) return appWatches.push(openWatch(res));
      return json(res, 200, { items: [app("a", "key-1", "1")], metadata: { resourceVersion: "1" } });
    }
    const field = seen.query.get("fieldSelector");
    if (field?.startsWith("metadata.name=")) {
      const name = field.slice("metadata.name=".length);
      if (name.startsWith("refused-"))
        return json(res, 400, { kind: "Status", code: 400, message: "invalid field selector" });
      if (watch) return openWatch(res);
      const s = secrets.get(name);
      return json(res, 200, { items: s ? [s] : [], metadata: { resourceVersion: "1" } });
    }
    const one = /^\/api\/v1\/namespaces\/ns\/secrets\/(.+)$/.exec(seen.path);
    if (one?.[1]) {
      gets.push(one[1]);
      const s = secrets.get(one[1]);
      return s ? json(res, 200, s) : json(res, 404, { kind: "Status", code: 404, reason: "NotFound" });
    }
    if (seen.path === "/api/v1/secrets") {
      if (watch) return secretWatches.push(openWatch(res));
      const items = [...secrets.values()].map((s) => ({
        apiVersion: "meta.k8s.io/v1",
        kind: "PartialObjectMetadata",
        metadata: s.metadata,
      }));
      return json(res, 200, { items, metadata: { resourceVersion: "1" } });
    }
    if (watch) return openWatch(res);
    json(res, 200, { items: [], metadata: { resourceVersion: "1" } });
  });
  cleanups.push(() => api.close());
  return { api, appWatches, secretWatches, secrets, gets };
}

async function startCache(api: Awaited<ReturnType<typeof fakeApi>>) {
  const cache = new ClusterCache({
    kubeConfig: api.kubeConfig,
    clock: systemClock,
    log,
    namespaces: [],
    operatorNamespace: "ghat-system",
    onChange: () => undefined,
    keySyncTimeoutMs: 300,
  });
  cleanups.push(() => cache.stop());
  await cache.start(5_000);
  return cache;
}

function secret(name: string, rv: string, bytes: number, owned = true) {
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "Opaque",
    metadata: {
      name,
      namespace: "ns",
      resourceVersion: rv,
      labels: { "app.kubernetes.io/managed-by": "ghat" },
      ...(owned ? { ownerReferences: owner } : {}),
    },
    data: { token: b64(bytes) },
  };
}

describe("ClusterCache key-Secret watches", () => {
  it("closes a key watch when no App references its Secret any more", async () => {
    const w = await world();
    const cache = await startCache(w.api);
    await cache.keySecret("ns", "key-1");
    expect(cache.keySecretWatches()).toBe(1);
    await expect.poll(() => w.appWatches.length).toBe(1);
    for (let i = 2; i <= 20; i++) {
      w.appWatches[0]?.({ type: "MODIFIED", object: app("a", `key-${i}`, String(i)) });
      await expect
        .poll(
          () => (cache.app("GitHubApp", "ns", "a") as ReturnType<typeof app>).spec.privateKeySecretRef.name,
        )
        .toBe(`key-${i}`);
      await cache.keySecret("ns", `key-${i}`);
      expect(cache.keySecretWatches()).toBe(1);
    }
    w.appWatches[0]?.({ type: "DELETED", object: app("a", "key-20", "21") });
    await expect.poll(() => cache.keySecretWatches()).toBe(0);
  });

  it("reads a key Secret no App references once, without opening a watch", async () => {
    const w = await world();
    w.secrets.set("stray", secret("stray", "3", 10));
    const cache = await startCache(w.api);
    expect(await cache.keySecret("ns", "stray")).toEqual({ token: b64(10) });
    expect(cache.keySecretWatches()).toBe(0);
  });

  it("opens no watch for a name that is not a valid object name", async () => {
    const w = await world();
    const cache = await startCache(w.api);
    await expect(cache.keySecret("ns", "key=1")).rejects.toMatchObject({ code: "InvalidSpec" });
    expect(cache.keySecretWatches()).toBe(0);
  });

  it("gives up on a key watch the server refuses, with a non-retryable error, at once", async () => {
    const w = await world();
    const cache = await startCache(w.api);
    await expect.poll(() => w.appWatches.length).toBe(1);
    w.appWatches[0]?.({ type: "MODIFIED", object: app("a", "refused-key", "2") });
    await expect
      .poll(() => (cache.app("GitHubApp", "ns", "a") as ReturnType<typeof app>).spec.privateKeySecretRef.name)
      .toBe("refused-key");
    await expect(cache.keySecret("ns", "refused-key")).rejects.toMatchObject({
      code: "PrivateKeyNotFound",
      retryable: false,
      message: expect.stringContaining("cannot be watched"),
    });
    expect(cache.keySecretWatches()).toBe(0);
  });
});

describe("ClusterCache managed Secrets", () => {
  it("holds metadata only and reads an owned Secret's data once per resourceVersion", async () => {
    const w = await world();
    w.secrets.set("out", secret("out", "5", 1000));
    const cache = await startCache(w.api);
    expect(cache.managedSecretMetadata("ns", "out")?.data).toBeUndefined();
    expect(
      w.api.requests.find((r) => r.path === "/api/v1/secrets" && !r.query.get("watch"))?.accept,
    ).toContain("as=PartialObjectMetadataList");
    const source = tokenSource(cache);
    const first = await source.secret("ns", "out");
    expect(first).toMatchObject({
      type: "Opaque",
      data: { token: b64(1000) },
      metadata: { resourceVersion: "5" },
    });
    await source.secret("ns", "out");
    expect(w.gets).toEqual(["out"]);
    // A new resourceVersion drops the kept data: the next read is a GET.
    w.secrets.set("out", secret("out", "6", 1001));
    w.secretWatches[0]?.({ type: "MODIFIED", object: { metadata: secret("out", "6", 0).metadata } });
    await expect.poll(() => cache.secretDataCached().entries).toBe(0);
    expect((await source.secret("ns", "out"))?.data).toEqual({ token: b64(1001) });
    expect(w.gets).toEqual(["out", "out"]);
  });

  it("never keeps the data of a large or unowned Secret, but still returns it", async () => {
    const w = await world();
    w.secrets.set("big", secret("big", "5", 600 * 1024));
    w.secrets.set("foreign", secret("foreign", "5", 100, false));
    const cache = await startCache(w.api);
    expect((await cache.secret("ns", "big"))?.data?.token).toHaveLength(b64(600 * 1024).length);
    expect((await cache.secret("ns", "foreign"))?.data).toEqual({ token: b64(100) });
    expect(cache.secretDataCached()).toEqual({ entries: 0, bytes: 0 });
  });

  it("reads a Secret it does not manage from the API server (name conflicts), and undefined when absent", async () => {
    const w = await world();
    const cache = await startCache(w.api);
    w.secrets.set("late", secret("late", "9", 10));
    expect((await cache.secret("ns", "late"))?.data).toEqual({ token: b64(10) });
    expect(await cache.secret("ns", "missing")).toBeUndefined();
    expect(cache.secretDataCached().entries).toBe(0);
  });
});

describe("SecretDataCache", () => {
  it("keeps at most its byte bound, dropping the least recently used", () => {
    const c = new SecretDataCache({ maxTotalBytes: 2500 });
    for (const n of ["a", "b", "c"]) expect(c.set(secret(n, "1", 1000))).toBe(true);
    expect(c.size).toBe(2);
    expect(c.get("ns", "a", "1")).toBeUndefined();
    expect(c.get("ns", "c", "1")).toBeDefined();
    expect(c.get("ns", "c", "2")).toBeUndefined();
    c.drop("ns", "c", "1");
    expect(c.size).toBe(2);
    c.drop("ns", "c", "2");
    expect(c.size).toBe(1);
  });
});

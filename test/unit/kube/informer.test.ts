import type { ServerResponse } from "node:http";
import type { KubernetesObject } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../../src/clock.ts";
import { GhatError } from "../../../src/core/errors.ts";
import {
  Informer,
  type InformerOptions,
  intern,
  internedCount,
  metadataListAccept,
  metadataWatchAccept,
} from "../../../src/kube/informer.ts";
import { instrument } from "../../../src/kube/instrument.ts";
import { FakeClock } from "../fakeclock.ts";
import { fakeApi, json, log, openWatch, secretMeta } from "./fakeapi.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function informer(
  api: Awaited<ReturnType<typeof fakeApi>>,
  overrides: Partial<InformerOptions<KubernetesObject>> = {},
) {
  const events: string[] = [];
  const i = new Informer<KubernetesObject>({
    kubeConfig: api.kubeConfig,
    path: "/api/v1/namespaces/ns/secrets",
    resource: "secrets in ns",
    clock: systemClock,
    log,
    random: () => 0,
    backoffMs: { initial: 20, max: 100 },
    onChange: (o, e) => events.push(`${e} ${o.metadata?.name}@${o.metadata?.resourceVersion}`),
    ...overrides,
  });
  cleanups.push(() => i.stop());
  return { i, events };
}

async function server(handle: Parameters<typeof fakeApi>[0]) {
  const api = await fakeApi(handle);
  cleanups.push(() => api.close());
  return api;
}

describe("Informer", () => {
  it("lists metadata only, in pages of the page size, following continue tokens", async () => {
    const api = await server((_req, res, seen) => {
      if (seen.query.get("watch")) return openWatch(res);
      if (!seen.query.get("continue"))
        return json(res, 200, {
          items: [secretMeta("a", "1")],
          metadata: { continue: "next", resourceVersion: "5" },
        });
      json(res, 200, { items: [secretMeta("b", "2")], metadata: { resourceVersion: "5" } });
    });
    const { i, events } = await informer(api, { metadataOnly: true, pageSize: 1, labelSelector: "x=y" });
    i.start();
    await i.waitForSync(5_000);
    expect(i.list().map((o) => o.metadata?.name)).toEqual(["a", "b"]);
    expect(events).toEqual(["add a@1", "add b@2"]);
    const lists = api.requests.filter((r) => !r.query.get("watch"));
    expect(
      lists.map((r) => [r.query.get("limit"), r.query.get("continue"), r.query.get("labelSelector")]),
    ).toEqual([
      ["1", null, "x=y"],
      ["1", "next", "x=y"],
    ]);
    expect(lists[0]?.accept).toBe(metadataListAccept);
    await expect.poll(() => api.requests.find((r) => r.query.get("watch"))?.accept).toBe(metadataWatchAccept);
    const watch = api.requests.find((r) => r.query.get("watch"));
    expect(watch?.query.get("resourceVersion")).toBe("5");
    expect(watch?.query.get("allowWatchBookmarks")).toBe("true");
    expect(Number(watch?.query.get("timeoutSeconds"))).toBeGreaterThan(0);
  });

  it("keeps neither managedFields nor kubectl's last-applied-configuration, and every other annotation", async () => {
    const big = JSON.stringify({ spec: "x".repeat(10_000) });
    const api = await server((_req, res, seen) => {
      if (seen.query.get("watch")) return openWatch(res);
      const o = secretMeta("a", "1") as { metadata: Record<string, unknown> };
      o.metadata.annotations = { "kubectl.kubernetes.io/last-applied-configuration": big, keep: "me" };
      o.metadata.managedFields = [{ manager: "kubectl", fieldsV1: {} }];
      json(res, 200, { items: [o], metadata: { resourceVersion: "5" } });
    });
    const { i } = await informer(api);
    i.start();
    await i.waitForSync(5_000);
    expect(i.get("a", "ns")?.metadata).toMatchObject({ annotations: { keep: "me" } });
    expect(Object.keys(i.get("a", "ns")?.metadata?.annotations ?? {})).toEqual(["keep"]);
    expect(i.get("a", "ns")?.metadata?.managedFields).toBeUndefined();
  });

  it("abandons a list that hangs after its deadline and retries it until one answers", async () => {
    let lists = 0;
    const api = await server((_req, res, seen) => {
      if (seen.query.get("watch")) return openWatch(res);
      lists++;
      if (lists <= 2) return; // never answers
      json(res, 200, { items: [secretMeta("a", "1")], metadata: { resourceVersion: "1" } });
    });
    const errors: unknown[] = [];
    const { i } = await informer(api, { listTimeoutMs: 150, onError: (e) => errors.push(e) });
    i.start();
    await i.waitForSync(5_000);
    expect(lists).toBe(3);
    expect(errors[0]).toBeInstanceOf(GhatError);
    expect((errors[0] as GhatError).code).toBe("Timeout");
    expect(i.get("a", "ns")).toBeDefined();
  });

  it("restarts a watch that brings no event and no bookmark for the idle time, from the last resourceVersion", async () => {
    const api = await server((_req, res, seen) => {
      if (!seen.query.get("watch")) return json(res, 200, { items: [], metadata: { resourceVersion: "7" } });
      const send = openWatch(res);
      if (seen.query.get("resourceVersion") === "7")
        send({ type: "BOOKMARK", object: { metadata: { resourceVersion: "9" } } });
      // then silence
    });
    const { i } = await informer(api, { watchIdleMs: 200 });
    i.start();
    await expect
      .poll(() => api.requests.filter((r) => r.query.get("watch")).length, { timeout: 5_000 })
      .toBeGreaterThanOrEqual(2);
    const watches = api.requests.filter((r) => r.query.get("watch"));
    expect(watches.map((w) => w.query.get("resourceVersion")).slice(0, 2)).toEqual(["7", "9"]);
    // A quiet watch is reopened, not relisted.
    expect(api.requests.filter((r) => !r.query.get("watch"))).toHaveLength(1);
  });

  it("reads watch events however the stream cuts them: mid-line, mid-character, several per write", async () => {
    let raw: ServerResponse | undefined;
    const api = await server((_req, res, seen) => {
      if (!seen.query.get("watch")) return json(res, 200, { items: [], metadata: { resourceVersion: "1" } });
      res.writeHead(200, { "content-type": "application/json" });
      res.flushHeaders();
      raw = res;
    });
    const { i, events } = await informer(api);
    i.start();
    await i.waitForSync(5_000);
    await expect.poll(() => raw).toBeDefined();
    const lines = [2, 3, 4, 5].map(
      (n) =>
        `${JSON.stringify({ type: "ADDED", object: secretMeta(`s${n}`, String(n), { annotations: { note: "ü🙂€".repeat(n * 200) } }) })}\n`,
    );
    // Bytes, cut at places that split lines and multi-byte characters; two lines in one write.
    const bytes = Buffer.from(`${lines[0]}\n${lines[1]}${lines[2]}${lines[3]}`);
    const cuts = [7, 1_001, 1_002, 2_503, 4_999, bytes.length - 3, bytes.length];
    let from = 0;
    for (const cut of cuts) {
      raw?.write(bytes.subarray(from, cut));
      from = cut;
      await new Promise((resolve) => setImmediate(resolve));
    }
    await expect.poll(() => events.length).toBe(4);
    expect(events).toEqual(["add s2@2", "add s3@3", "add s4@4", "add s5@5"]);
    expect(i.get("s5", "ns")?.metadata?.annotations?.note).toBe("ü🙂€".repeat(1_000));
  });

  it("keeps a watch open while events keep coming, however long, when each gap is under the idle time", async () => {
    let push: ((e: unknown) => void) | undefined;
    const api = await server((_req, res, seen) => {
      if (!seen.query.get("watch")) return json(res, 200, { items: [], metadata: { resourceVersion: "1" } });
      push = openWatch(res);
    });
    const clock = new FakeClock();
    const { i, events } = await informer(api, { watchIdleMs: 300, clock });
    i.start();
    await i.waitForSync(5_000);
    await expect.poll(() => push).toBeDefined();
    // 12 events 100 ms apart: 1.2 s, four times the idle time, in one watch.
    for (let n = 2; n < 14; n++) {
      push?.({ type: "ADDED", object: secretMeta(`s${n}`, String(n)) });
      await expect.poll(() => events.length, { interval: 5 }).toBe(n - 1);
      clock.advance(100);
    }
    expect(api.requests.filter((r) => r.query.get("watch"))).toHaveLength(1);
    // Then silence for the idle time: reopened from the last resourceVersion.
    clock.advance(300);
    await expect.poll(() => api.requests.filter((r) => r.query.get("watch")).length).toBe(2);
    expect(api.requests.filter((r) => r.query.get("watch"))[1]?.query.get("resourceVersion")).toBe("13");
  });

  it("applies watch events to the cache and relists on 410 Gone", async () => {
    let listed = 0;
    let push: ((e: unknown) => void) | undefined;
    const api = await server((_req, res, seen) => {
      if (!seen.query.get("watch")) {
        listed++;
        return json(res, 200, {
          items: listed === 1 ? [secretMeta("a", "1"), secretMeta("b", "1")] : [secretMeta("c", "20")],
          metadata: { resourceVersion: String(listed * 10) },
        });
      }
      push = openWatch(res);
    });
    const { i, events } = await informer(api);
    i.start();
    await i.waitForSync(5_000);
    await expect.poll(() => push).toBeDefined();
    push?.({ type: "MODIFIED", object: secretMeta("a", "2") });
    push?.({ type: "DELETED", object: secretMeta("b", "3") });
    await expect.poll(() => i.get("a", "ns")?.metadata?.resourceVersion).toBe("2");
    expect(i.get("b", "ns")).toBeUndefined();
    push?.({ type: "ERROR", object: { kind: "Status", code: 410, message: "too old resource version" } });
    await expect.poll(() => i.list().map((o) => o.metadata?.name)).toEqual(["c"]);
    expect(events).toEqual(["add a@1", "add b@1", "update a@2", "delete b@3", "add c@20", "delete a@2"]);
  });

  it("stops for good on a status it is told retrying cannot help, and fails its waiters at once", async () => {
    const api = await server((_req, res) =>
      json(res, 400, {
        kind: "Status",
        code: 400,
        message: "unable to parse requirement: invalid field selector",
      }),
    );
    // Every timer the informer sets: a retry would be a backoff timer (≤ 100 ms here).
    const timers: number[] = [];
    const clock = {
      now: () => systemClock.now(),
      setTimer: (ms: number, fn: () => void) => {
        timers.push(ms);
        return systemClock.setTimer(ms, fn);
      },
    };
    const { i } = await informer(api, { fatalStatuses: [400], clock });
    const waiting = i.waitForSync(60_000);
    i.start();
    await expect(waiting).rejects.toMatchObject({
      code: "InvalidSpec",
      message: expect.stringContaining("HTTP 400"),
    });
    expect(timers.filter((ms) => ms <= 100)).toEqual([]);
    expect(api.requests).toHaveLength(1);
    await expect(i.waitForSync()).rejects.toMatchObject({ code: "InvalidSpec" });
  });

  it("lets a caller wait for the first sync with its own deadline", async () => {
    const api = await server(() => undefined); // never answers
    const { i } = await informer(api, { listTimeoutMs: 60_000 });
    i.start();
    const err = await i.waitForSync(100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GhatError);
    expect(err).toMatchObject({ code: "Timeout", message: "cache of secrets in ns not synced after 0s" });
    expect(i.synced).toBe(false);
  });

  it("counts its list requests as 'list' (the REST client's reads are 'get') when the KubeConfig is instrumented", async () => {
    const api = await server((_req, res, seen) => {
      if (seen.query.get("watch")) return openWatch(res);
      json(res, 200, { items: [], metadata: { resourceVersion: "1" } });
    });
    const observed: string[] = [];
    instrument(api.kubeConfig, (verb, resource) => observed.push(`${verb} ${resource}`));
    const { i } = await informer(api);
    i.start();
    await i.waitForSync(5_000);
    expect(observed).toEqual(["list secrets"]);
  });
});

describe("intern", () => {
  it("shares short strings up to a bound: unique values a tenant writes cannot grow it", () => {
    const before = internedCount();
    expect(intern("ghat.dev/v1alpha1")).toBe("ghat.dev/v1alpha1");
    expect(intern("ghat.dev/v1alpha1")).toBe("ghat.dev/v1alpha1");
    expect(internedCount() - before).toBeLessThanOrEqual(1);
    intern("x".repeat(101));
    expect(internedCount() - before).toBeLessThanOrEqual(1);
    for (let i = 0; i < 10_000; i++) intern(`unique message ${i}`);
    expect(internedCount()).toBe(4096);
  });
});

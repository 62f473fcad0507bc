import { ApiException, CoreV1Api, ListWatch, type V1ConfigMap, Watch } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { controlPlane, kubeConfig, kubectl, newNamespace } from "../support/cluster.ts";

const status = (err: unknown) => (err instanceof ApiException ? err.code : undefined);

describe("the local control plane", () => {
  it("answers kubectl like a cluster", async () => {
    const r = await kubectl(["get", "ns", "default", "-o", "name"]);
    expect(r).toMatchObject({ code: 0, stdout: "namespace/default\n" });
  });

  it("establishes and serves a CustomResourceDefinition", async () => {
    const crd = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: "widgets.test.ghat.dev" },
      spec: {
        group: "test.ghat.dev",
        scope: "Namespaced",
        names: { kind: "Widget", plural: "widgets", singular: "widget", listKind: "WidgetList" },
        versions: [
          {
            name: "v1",
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: "object",
                properties: { spec: { type: "object", properties: { size: { type: "integer" } } } },
              },
            },
          },
        ],
      },
    };
    expect((await kubectl(["apply", "-f", "-"], { input: JSON.stringify(crd) })).code).toBe(0);
    const wait = await kubectl([
      "wait",
      "--for=condition=Established",
      "crd/widgets.test.ghat.dev",
      "--timeout=60s",
    ]);
    expect(wait.stdout).toContain("condition met");
    const ns = await newNamespace("crd");
    const widget = {
      apiVersion: "test.ghat.dev/v1",
      kind: "Widget",
      metadata: { name: "w" },
      spec: { size: 3 },
    };
    await expect
      .poll(
        async () => (await kubectl(["-n", ns, "apply", "-f", "-"], { input: JSON.stringify(widget) })).code,
        { timeout: 30_000 },
      )
      .toBe(0);
    expect((await kubectl(["-n", ns, "get", "widget", "w", "-o", "jsonpath={.spec.size}"])).stdout).toBe("3");
  });

  it("garbage-collects an object whose owner is deleted", async () => {
    const ns = await newNamespace("gc");
    const core = kubeConfig().makeApiClient(CoreV1Api);
    const owner = await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: "owner" } },
    });
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: {
        metadata: {
          name: "owned",
          ownerReferences: [
            { apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata?.uid ?? "" },
          ],
        },
      },
    });
    await core.deleteNamespacedConfigMap({ namespace: ns, name: "owner" });
    await expect
      .poll(
        async () => {
          try {
            await core.readNamespacedConfigMap({ namespace: ns, name: "owned" });
            return 200;
          } catch (err) {
            return status(err);
          }
        },
        { timeout: 60_000, interval: 500 },
      )
      .toBe(404);
  });

  it("finishes deleting a namespace", async () => {
    const ns = await newNamespace("nsdel");
    const core = kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "x" } } });
    await core.deleteNamespace({ name: ns });
    await expect
      .poll(
        async () => {
          try {
            await core.readNamespace({ name: ns });
            return 200;
          } catch (err) {
            return status(err);
          }
        },
        { timeout: 60_000, interval: 500 },
      )
      .toBe(404);
  });

  it("gives a non-admin user only what RBAC grants", async () => {
    const ns = await newNamespace("rbac");
    const { kubeconfigPath } = await controlPlane.createUser("alice", ["developers"]);
    const denied = await kubectl(["-n", ns, "get", "secrets"], { kubeconfig: kubeconfigPath });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain('User "alice" cannot list resource "secrets"');
    expect(
      (await kubectl(["-n", ns, "create", "role", "read-secrets", "--verb=list", "--resource=secrets"])).code,
    ).toBe(0);
    expect(
      (
        await kubectl([
          "-n",
          ns,
          "create",
          "rolebinding",
          "alice",
          "--role=read-secrets",
          "--group=developers",
        ])
      ).code,
    ).toBe(0);
    await expect
      .poll(async () => (await kubectl(["-n", ns, "get", "secrets"], { kubeconfig: kubeconfigPath })).code)
      .toBe(0);
    expect(
      (await kubectl(["-n", ns, "delete", "secret", "x"], { kubeconfig: kubeconfigPath })).stderr,
    ).toContain("forbidden");
  });

  it("survives an API server restart: clients and informers recover", async () => {
    const ns = await newNamespace("restart");
    const kc = kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const seen = new Set<string>();
    const errors: unknown[] = [];
    let informer = new ListWatch<V1ConfigMap>(
      `/api/v1/namespaces/${ns}/configmaps`,
      new Watch(kc),
      () => core.listNamespacedConfigMap({ namespace: ns }),
      false,
    );
    const restartOnError = (err: unknown) => {
      // client-node informers stop on errors other than 410: restart them (as src/kube/informer.ts does).
      errors.push(err);
      // The test may have stopped the informer meanwhile (it is undefined then).
      setTimeout(() => informer?.start().catch(() => undefined), 500);
    };
    informer.on("add", (cm) => seen.add(cm.metadata?.name ?? ""));
    informer.on("error", restartOnError);
    await informer.start();
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "before" } } });
    await expect.poll(() => seen.has("before"), { timeout: 20_000 }).toBe(true);

    await controlPlane.restartApiServer();

    await expect
      .poll(
        async () => {
          try {
            await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "after" } } });
            return true;
          } catch (err) {
            return status(err) === 409;
          }
        },
        { timeout: 60_000, interval: 500 },
      )
      .toBe(true);
    await expect.poll(() => seen.has("after"), { timeout: 60_000, interval: 500 }).toBe(true);
    await informer.stop();
    informer = undefined as unknown as typeof informer;
  });
});

import { describe, expect, inject, it } from "vitest";
import { kubectl, newNamespace } from "../support/cluster.ts";

// The "node" project: a control plane with one real node (containerd, kubelet, kube-scheduler),
// started by test/setup/node.ts. Pods run the busybox image built and imported there; nothing
// is pulled, hence imagePullPolicy: Never.

const image = () => inject("busyboxImage");

/** Measurements go to stderr (vitest shows them with the file's output). */
function report(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function ok(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

function pod(name: string, namespace: string, extra: Record<string, unknown> = {}, command?: string) {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace },
    spec: {
      terminationGracePeriodSeconds: 0,
      containers: [
        {
          name: "main",
          image: image(),
          imagePullPolicy: "Never",
          command: ["sh", "-c", command ?? "echo hello from $(hostname); exec sleep 3600"],
        },
      ],
      ...extra,
    },
  });
}

async function podReady(namespace: string, name: string): Promise<string> {
  const r = await kubectl([
    "-n",
    namespace,
    "get",
    "pod",
    name,
    "-o",
    'jsonpath={.status.phase}/{.status.conditions[?(@.type=="Ready")].status}',
  ]);
  return r.stdout;
}

describe("the local node", () => {
  it("is Ready", async () => {
    const status = await ok([
      "get",
      "node",
      inject("nodeName"),
      "-o",
      'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    ]);
    expect(status).toBe("True");
    report(`node: Ready ${inject("nodeReadyMs")} ms after containerd started`);
  });

  it("runs a scheduled Pod; kubectl logs and exec reach it", async () => {
    const ns = await newNamespace("node");
    const started = Date.now();
    await ok(["apply", "-f", "-"], pod("hello", ns));
    await expect.poll(() => podReady(ns, "hello"), { timeout: 60_000, interval: 200 }).toBe("Running/True");
    const startMs = Date.now() - started;
    report(`node: Pod created -> Running and Ready in ${startMs} ms`);
    // Placed by kube-scheduler (no nodeName in the spec).
    expect(await ok(["-n", ns, "get", "pod", "hello", "-o", "jsonpath={.spec.nodeName}"])).toBe(
      inject("nodeName"),
    );
    expect(await ok(["-n", ns, "get", "pod", "hello", "-o", "jsonpath={.status.podIP}"])).toMatch(
      /^10\.244\.0\.\d+$/,
    );
    await expect
      .poll(async () => (await kubectl(["-n", ns, "logs", "hello"])).stdout, { timeout: 20_000 })
      .toContain("hello from hello");
    expect(await ok(["-n", ns, "exec", "hello", "--", "sh", "-c", "echo $((6 * 7))"])).toBe("42\n");
    await ok(["-n", ns, "delete", "pod", "hello", "--wait=true", "--timeout=60s"]);
  });

  it("updates a Secret volume in a running Pod after the Secret changes", async () => {
    const ns = await newNamespace("node-secret");
    await ok(["-n", ns, "create", "secret", "generic", "token", "--from-literal=token=first"]);
    const withMount = JSON.parse(
      pod("reader", ns, { volumes: [{ name: "token", secret: { secretName: "token" } }] }, "exec sleep 3600"),
    );
    withMount.spec.containers[0].volumeMounts = [{ name: "token", mountPath: "/var/run/token" }];
    await ok(["apply", "-f", "-"], JSON.stringify(withMount));
    await expect.poll(() => podReady(ns, "reader"), { timeout: 60_000, interval: 200 }).toBe("Running/True");
    const read = async () =>
      (await kubectl(["-n", ns, "exec", "reader", "--", "cat", "/var/run/token/token"])).stdout;
    expect(await read()).toBe("first");
    const changed = Date.now();
    await ok([
      "-n",
      ns,
      "patch",
      "secret",
      "token",
      "-p",
      JSON.stringify({ stringData: { token: "second" } }),
    ]);
    // kubelet's syncFrequency is 10 s on this node (src/devcluster/node.ts): about 15 s at most.
    await expect.poll(read, { timeout: 90_000, interval: 250 }).toBe("second");
    report(`node: Secret volume updated in the Pod ${Date.now() - changed} ms after the change`);
  });
});

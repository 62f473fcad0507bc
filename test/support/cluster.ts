import { execFile } from "node:child_process";
import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterAll, inject } from "vitest";

/** Path of the admin kubeconfig of the run's shared control plane. */
export function kubeconfigPath(): string {
  return inject("kubeconfig");
}

export function kubeConfig(path = kubeconfigPath()): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs kubectl the way a user would. Never throws on a non-zero exit: check `code`. */
export function kubectl(
  args: string[],
  options: { input?: string; kubeconfig?: string } = {},
): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(
      "kubectl",
      ["--kubeconfig", options.kubeconfig ?? kubeconfigPath(), ...args],
      { maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ stdout, stderr, code });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

const created: string[] = [];
let counter = 0;

/** A fresh namespace for one test; deleted after the file's tests (namespace controller runs). */
export async function newNamespace(prefix: string): Promise<string> {
  const name = `${prefix}-${process.pid}-${counter++}-${Math.random().toString(36).slice(2, 6)}`
    .toLowerCase()
    .slice(0, 63);
  await kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name } } });
  created.push(name);
  return name;
}

afterAll(async () => {
  const core = kubeConfig().makeApiClient(CoreV1Api);
  await Promise.all(created.splice(0).map((name) => core.deleteNamespace({ name }).catch(() => undefined)));
});

async function control(action: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${inject("controlUrl")}/${action}`, {
    method: "POST",
    body: JSON.stringify(body ?? {}),
  });
  if (!res.ok) throw new Error(`control ${action} failed: ${await res.text()}`);
  return res.json();
}

export const controlPlane = {
  restartApiServer: () => control("apiserver-restart"),
  stopApiServer: () => control("apiserver-stop"),
  startApiServer: () => control("apiserver-start"),
  restartEtcd: () => control("etcd-restart"),
  stopEtcd: () => control("etcd-stop"),
  startEtcd: () => control("etcd-start"),
  memory: () => control("memory") as Promise<Record<string, number>>,
  /** A kubeconfig for a non-admin user (RBAC tests). */
  createUser: (name: string, groups: string[] = []) =>
    control("user", { name, groups }) as Promise<{ kubeconfigPath: string }>,
};

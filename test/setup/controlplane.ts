import { execFileSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { TestProject } from "vitest/node";
import { type ControlPlane, startControlPlane } from "../../src/devcluster/controlplane.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kubeconfig: string;
    /** POST {url}/{action} with action apiserver-restart, apiserver-stop, apiserver-start, etcd-restart, user. */
    controlUrl: string;
  }
}

/**
 * One real control plane per test run, shared by every file of the "cluster" project.
 * Test files reach it through test/support/cluster.ts; restarts go through a tiny local
 * HTTP endpoint because test files run in workers, not in this process.
 */
export default async function setup(project: TestProject) {
  let cp: ControlPlane | undefined;
  let kubeconfig = process.env.GHAT_TEST_KUBECONFIG;
  if (!kubeconfig) {
    cp = await startControlPlane();
    kubeconfig = cp.kubeconfigPath;
  }
  try {
    // The CRDs under test are the ones the schemas generate now (drift is checked separately).
    execFileSync("node", ["hack/gen-crds.ts"], { stdio: "inherit" });
    execFileSync(
      "kubectl",
      ["--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "crds/"],
      {
        stdio: ["ignore", "ignore", "inherit"],
      },
    );
    execFileSync(
      "kubectl",
      [
        "--kubeconfig",
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=ghat",
        "--timeout=60s",
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
  } catch (err) {
    await cp?.stop();
    throw err;
  }
  const server = await control(cp);
  project.provide("kubeconfig", kubeconfig);
  project.provide("controlUrl", `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  return async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await cp?.stop();
  };
}

function control(cp: ControlPlane | undefined): Promise<Server> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      const action = (req.url ?? "").slice(1);
      const run = async (): Promise<unknown> => {
        if (!cp)
          throw new Error("the control plane is external (GHAT_TEST_KUBECONFIG); it cannot be restarted");
        switch (action) {
          case "apiserver-restart":
            return cp.restartApiServer();
          case "apiserver-stop":
            return cp.stopApiServer();
          case "apiserver-start":
            return cp.startApiServer();
          case "etcd-restart":
            return cp.restartEtcd();
          case "etcd-stop":
            return cp.stopEtcd();
          case "etcd-start":
            return cp.startEtcd();
          case "user": {
            const { name, groups } = JSON.parse(body) as { name: string; groups: string[] };
            return cp.createUser(name, groups);
          }
          case "memory":
            return cp.memory();
          default:
            throw new Error(`unknown action ${action}`);
        }
      };
      run().then(
        (result) =>
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(result ?? {})),
        (err: unknown) => res.writeHead(500).end(err instanceof Error ? err.message : String(err)),
      );
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

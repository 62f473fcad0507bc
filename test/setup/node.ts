import type { TestProject } from "vitest/node";
import { type ControlPlane, startControlPlane } from "../../src/devcluster/controlplane.ts";
import { loadBusyboxImage } from "../support/images.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** Name of the run's node (the "node" project). */
    nodeName: string;
    /** Image name of the busybox test image, loaded into the node's containerd. */
    busyboxImage: string;
    /** Milliseconds from starting the node's processes to the Node being Ready. */
    nodeReadyMs: number;
    /** The node's address (its InternalIP): where Pods reach servers a test runs on the host. */
    nodeIp: string;
    /** containerd's socket, for importing more images (`importImage`). */
    containerdAddress: string;
  }
}

/**
 * One control plane with a real node (containerd, kubelet, kube-scheduler) per test run, for
 * the "node" project: Linux and root only (see src/devcluster/node.ts and hack/node/install.sh).
 * The busybox test image is loaded once here. Test files reach the cluster through
 * test/support/cluster.ts (kubeconfig) like the "cluster" project's files do.
 */
export default async function setup(project: TestProject) {
  let nodeStarted = 0;
  let nodeReady = 0;
  let cp: ControlPlane | undefined;
  try {
    cp = await startControlPlane({
      node: {
        progress: (line) => {
          if (line.startsWith("Starting containerd")) nodeStarted = Date.now();
          process.stderr.write(`[node] ${line}\n`);
        },
      },
    });
    nodeReady = Date.now();
    if (!cp.node) throw new Error("the control plane started without its node");
    const image = await loadBusyboxImage(cp.node.containerdAddress);
    project.provide("kubeconfig", cp.kubeconfigPath);
    project.provide("controlUrl", "");
    project.provide("nodeName", cp.node.name);
    project.provide("busyboxImage", image);
    project.provide("nodeReadyMs", nodeReady - nodeStarted);
    project.provide("nodeIp", cp.node.ip);
    project.provide("containerdAddress", cp.node.containerdAddress);
  } catch (err) {
    await cp?.stop();
    throw err;
  }
  return async () => {
    await cp?.stop();
  };
}

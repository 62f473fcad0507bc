import { configDefaults, defineConfig } from "vitest/config";

// Files that restart the API server or etcd: they would break whatever else runs against the
// same control plane at that moment, so they get one of their own.
const disruptive = ["test/e2e/faults.test.ts", "test/integration/controlplane.test.ts"];

const onControlPlane = {
  globalSetup: ["test/setup/controlplane.ts"],
  testTimeout: 120_000,
  hookTimeout: 180_000,
  // One file at a time per control plane: files share its API server and its CPU.
  fileParallelism: false,
};

// Three projects: "unit" needs nothing but Node; "cluster" and "disruptive" each start one real
// control plane (kube-apiserver, etcd, kube-controller-manager) in their global setup and run
// their files one after the other against it. Vitest runs all single-worker files one at a
// time, so `make test` (hack/test.sh) runs "disruptive" in a second vitest process beside
// the other two.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts", "test/sim/**/*.test.ts"],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "cluster",
          include: ["test/integration/**/*.test.ts", "test/e2e/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...disruptive],
          ...onControlPlane,
        },
      },
      {
        test: { name: "disruptive", include: disruptive, ...onControlPlane },
      },
      {
        // A control plane with a real node (containerd, runc, kubelet, kube-scheduler; root on
        // Linux): Pods, the chart installed from the image, consumers reading Secrets.
        test: {
          name: "node",
          include: ["test/node/**/*.test.ts"],
          globalSetup: ["test/setup/node.ts"],
          testTimeout: 180_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      },
      {
        // The container image built from the Dockerfile with buildah (root, the npm registry,
        // minutes when cold): its config, its filesystem, and `ghat --version` inside it.
        test: {
          name: "image",
          include: ["test/image/**/*.test.ts"],
          testTimeout: 60_000,
          hookTimeout: 20 * 60_000,
        },
      },
    ],
  },
});

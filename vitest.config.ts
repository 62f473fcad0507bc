import { defineConfig } from "vitest/config";

// Two projects: "unit" needs nothing but Node; "cluster" shares one real control plane
// (kube-apiserver, etcd, kube-controller-manager) started once by the global setup.
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
          globalSetup: ["test/setup/controlplane.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // One file at a time: some files restart the API server or etcd, which would break
          // whatever else runs against the shared control plane at that moment.
          fileParallelism: false,
        },
      },
    ],
  },
});

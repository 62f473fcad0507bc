import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { customResourceDefinitions } from "./api/crds.ts";
import { group, version } from "./api/meta.ts";
import { parseConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { startOperator } from "./main.ts";

const sandboxUsage = `Usage: ghat sandbox [--local] [--exit-when-ready]

With a working kube context: applies the CRDs and runs the operator against it. Without one:
starts a local control plane, the GitHub API simulator with a generated App, the operator and an
example GitHubAppToken, then shows the resulting Secret. Ctrl-C stops everything.

Flags:
  --local             start the local sandbox even when a kube context works
  --exit-when-ready   stop once the example Secret is written (for tests)
  -h, --help          show this help
`;

/**
 * `ghat sandbox`: with a reachable kube context, runs the operator against it (CRDs applied
 * first). Without one, starts everything locally: a control plane, the GitHub simulator with a
 * generated App, the operator, and an example GitHubAppToken; then shows the Secret.
 */
export async function sandboxCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      local: { type: "boolean" },
      "exit-when-ready": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(sandboxUsage);
    return 0;
  }
  const log = createLogger({ pretty: true, level: "info" });
  if (!values.local && currentContextWorks()) {
    log.info("Found a working kube context: applying CRDs and running ghat against it");
    applyCrds();
    const operator = await startOperator(
      parseConfig(["--log-format", "pretty", "--health-port", "0", "--metrics-port", "0"], process.env),
    );
    await waitForSignal();
    await operator.stop();
    return 0;
  }
  log.info("No working kube context: starting a local sandbox (control plane, GitHub simulator, operator)");
  const { startControlPlane } = await import("./devcluster/controlplane.ts");
  const { startSimulator } = await import("./sim/simulator.ts");
  const { generateAppKeyPair } = await import("./sim/keys.ts");

  const dir = join(process.cwd(), ".local", "sandbox");
  mkdirSync(dir, { recursive: true });
  const cp = await startControlPlane({ workDir: join(dir, "cluster") });
  const kubeconfig = join(process.cwd(), ".local", "sandbox-kubeconfig");
  execFileSync("cp", [cp.kubeconfigPath, kubeconfig]);
  const keys = generateAppKeyPair();
  const sim = await startSimulator({
    seed: {
      apps: [
        {
          id: 1001,
          clientId: "Iv23liSandbox",
          slug: "ghat-sandbox",
          name: "ghat sandbox",
          owner: "acme",
          publicKeys: [keys.publicKeyPem],
        },
      ],
      installations: [
        {
          id: 5001,
          appId: 1001,
          account: { login: "acme", type: "Organization" },
          permissions: { contents: "write", metadata: "read", pull_requests: "write" },
          repositorySelection: "all",
        },
      ],
      repositories: [
        { id: 7001, owner: "acme", name: "app", private: true },
        { id: 7002, owner: "acme", name: "library", private: true },
      ],
    },
  });
  process.env.KUBECONFIG = kubeconfig;
  applyCrds();
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const ns = "demo";
  await core.createNamespace({ body: { metadata: { name: ns } } }).catch(() => undefined);
  await core
    .createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: "sandbox-app-key" },
        stringData: { "private-key.pem": keys.privateKeyPkcs1Pem },
      },
    })
    .catch(() => undefined);
  const app = {
    apiVersion: `${group}/${version}`,
    kind: "GitHubApp",
    metadata: { name: "sandbox-app", namespace: ns },
    spec: { appId: 1001, privateKeySecretRef: { name: "sandbox-app-key" }, baseUrl: sim.url },
  };
  const token = {
    apiVersion: `${group}/${version}`,
    kind: "GitHubAppToken",
    metadata: { name: "demo", namespace: ns },
    spec: {
      appRef: { name: "sandbox-app" },
      installation: { owner: "acme" },
      permissions: { contents: "read" },
      repositories: ["app"],
      secrets: [{ name: "demo-github-token" }, { name: "demo-flux", format: "basicAuth" }],
    },
  };
  writeFileSync(join(dir, "example.yaml"), `${stringify(app)}---\n${stringify(token)}`);
  await custom
    .createNamespacedCustomObject({ group, version, namespace: ns, plural: "githubapps", body: app })
    .catch(() => undefined);
  await custom
    .createNamespacedCustomObject({ group, version, namespace: ns, plural: "githubapptokens", body: token })
    .catch(() => undefined);

  const operator = await startOperator(
    parseConfig(
      ["--kubeconfig", kubeconfig, "--log-format", "pretty", "--health-port", "0", "--metrics-port", "0"],
      {},
    ),
    { log },
  );
  await waitUntilReady(() =>
    custom.getNamespacedCustomObject({
      group,
      version,
      namespace: ns,
      plural: "githubapptokens",
      name: "demo",
    }),
  );
  const show = (args: string[]) =>
    execFileSync("kubectl", ["--kubeconfig", kubeconfig, "-n", ns, ...args], { encoding: "utf8" });
  process.stdout.write(`\n$ kubectl -n ${ns} get ghat\n${show(["get", "ghat"])}`);
  process.stdout.write(`\n$ kubectl -n ${ns} get secrets -l app.kubernetes.io/managed-by=ghat\n`);
  process.stdout.write(show(["get", "secrets", "-l", "app.kubernetes.io/managed-by=ghat"]));
  process.stdout.write(`\nAnnotations of demo-github-token:\n`);
  process.stdout.write(
    `${show(["get", "secret", "demo-github-token", "-o", "jsonpath={.metadata.annotations}"])}\n`,
  );
  const k = `kubectl --kubeconfig ${kubeconfig}`;
  process.stdout.write(
    [
      "",
      "ghat sandbox is running.",
      `  GitHub simulator:  ${sim.url}`,
      `  kubeconfig:        ${kubeconfig}`,
      `  example:           ${join(dir, "example.yaml")}`,
      "",
      "Try:",
      `  ${k} -n ${ns} get ghat`,
      `  ${k} -n ${ns} describe ghat demo`,
      `  ${k} -n ${ns} get secret demo-github-token -o jsonpath='{.metadata.annotations}'`,
      `  ${k} -n ${ns} get secret demo-github-token -o jsonpath='{.data.token}' | base64 -d | cut -c1-12`,
      `  ${k} explain githubapptoken.spec`,
      "",
      "Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
  if (!values["exit-when-ready"]) await waitForSignal();
  await operator.stop();
  await sim.close();
  await cp.stop();
  return 0;
}

function currentContextWorks(): boolean {
  try {
    execFileSync("kubectl", ["version", "--request-timeout=3s", "-o", "json"], {
      stdio: "ignore",
      timeout: 8000,
    });
    return true;
  } catch {
    return false;
  }
}

function applyCrds(): void {
  const manifest = customResourceDefinitions()
    .map((c) => stringify(c))
    .join("---\n");
  execFileSync(
    "kubectl",
    ["apply", "--server-side", "--force-conflicts", "--field-manager=ghat-sandbox", "-f", "-"],
    {
      input: manifest,
      stdio: ["pipe", "inherit", "inherit"],
    },
  );
  execFileSync(
    "kubectl",
    ["wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=ghat", "--timeout=60s"],
    {
      stdio: "inherit",
    },
  );
}

/**
 * Waits for the example token's Ready condition without blocking the event loop (the
 * operator runs in this process) and without a fixed deadline a slow first start could beat:
 * it says what it is waiting for every few seconds and gives up only after 10 minutes.
 */
async function waitUntilReady(read: () => Promise<unknown>): Promise<void> {
  const started = Date.now();
  let said = 0;
  for (;;) {
    const token = (await read().catch(() => undefined)) as
      | { status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] } }
      | undefined;
    const ready = token?.status?.conditions?.find((c) => c.type === "Ready");
    if (ready?.status === "True") return;
    const elapsed = Date.now() - started;
    if (elapsed > 600_000)
      throw new Error(
        `the example token is not Ready after 10 minutes: ${ready?.reason ?? "no status"} ${ready?.message ?? ""}`,
      );
    if (elapsed - said >= 5_000) {
      said = elapsed;
      process.stdout.write(
        `Waiting for ghat/demo to be Ready (${Math.round(elapsed / 1000)}s): ${ready ? `${ready.reason}: ${ready.message}` : "not reconciled yet"}\n`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
}

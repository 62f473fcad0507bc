import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { installedAppId as appId, installedSeed } from "../../hack/kind/seed.ts";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { kubeconfigPath, kubectl, newNamespace } from "../support/cluster.ts";
import { localFlags, OperatorProcess } from "./processes.ts";

/**
 * ghat as a user installs it, seen only through kubectl and the simulator's admin endpoint:
 * nothing in this file reaches into the operator or the simulator in-process, so the same
 * file runs against a kind cluster (`make kind-e2e`: the chart's operator, the simulator as a
 * Deployment, see hack/kind-e2e.sh) and, here, against stand-ins started the same way the
 * image starts them (`ghat sim` and `ghat run --namespaces <ns>` as processes).
 *
 * External mode (all set by hack/kind-e2e.sh):
 *   GHAT_E2E_NAMESPACE     namespace the installed operator watches
 *   GHAT_E2E_SIM_ADMIN     simulator URL reachable from the tests (a port-forward)
 *   GHAT_E2E_SIM_URL       simulator URL reachable from the operator (the in-cluster Service)
 *   GHAT_E2E_APP_KEY_FILE  the App's private key (PEM) the simulator's seed trusts
 */
const external = process.env.GHAT_E2E_SIM_ADMIN !== undefined;

interface Target {
  namespace: string;
  adminUrl: string;
  simUrl: string;
  privateKeyPem: string;
  stop(): Promise<void>;
}

async function localTarget(): Promise<Target> {
  const namespace = await newNamespace("installed");
  const keys = generateAppKeyPair();
  const dir = mkdtempSync(join(tmpdir(), "ghat-installed-"));
  const seedPath = join(dir, "seed.yaml");
  writeFileSync(seedPath, stringify(installedSeed(keys.publicKeyPem)));
  const cli = new URL("../../src/cli.ts", import.meta.url).pathname;
  const sim: ChildProcess = spawn(process.execPath, [cli, "sim", "--seed", seedPath], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    sim.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const line = out.split("\n").find((l) => l.includes('"url"'));
      if (line) resolve((JSON.parse(line) as { url: string }).url);
    });
    sim.once("exit", (code) => reject(new Error(`ghat sim exited with ${String(code)}`)));
  });
  // What the chart's Deployment runs, pointed at this control plane.
  const operator = new OperatorProcess([...localFlags(kubeconfigPath()), "--namespaces", namespace]);
  return {
    namespace,
    adminUrl: url,
    simUrl: url,
    privateKeyPem: keys.privateKeyPkcs1Pem,
    async stop() {
      operator.kill("SIGTERM");
      sim.kill("SIGTERM");
      await operator.exited;
    },
  };
}

function externalTarget(): Target {
  const need = (name: string) => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} must be set in external mode (see hack/kind-e2e.sh)`);
    return v;
  };
  return {
    namespace: need("GHAT_E2E_NAMESPACE"),
    adminUrl: need("GHAT_E2E_SIM_ADMIN"),
    simUrl: need("GHAT_E2E_SIM_URL"),
    privateKeyPem: readFileSync(need("GHAT_E2E_APP_KEY_FILE"), "utf8"),
    stop: async () => undefined,
  };
}

describe(`ghat as installed (${external ? "external cluster" : "local stand-ins"})`, () => {
  let t: Target;
  const admin = async (path: string, body?: unknown) => {
    const res = await fetch(`${t.adminUrl}/_sim/${path}`, {
      method: body === undefined ? "GET" : "POST",
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    expect(res.status, path).toBe(200);
    return res.json() as Promise<Record<string, unknown>>;
  };
  const k = (args: string[], input?: string) =>
    kubectl(["-n", t.namespace, ...args], input === undefined ? {} : { input });
  const secretToken = async (name: string) => {
    const r = await k(["get", "secret", name, "-o", "jsonpath={.data.token}"]);
    return r.code === 0 ? Buffer.from(r.stdout, "base64").toString("utf8") : "";
  };

  beforeAll(async () => {
    t = external ? externalTarget() : await localTarget();
  });
  afterAll(async () => {
    await t?.stop();
  });

  it("a token applied with kubectl becomes Ready, its Secret works on GitHub, and delete revokes it", async () => {
    const manifests = [
      {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "installed-app-key" },
        stringData: { "private-key.pem": t.privateKeyPem },
      },
      {
        apiVersion: "ghat.dev/v1alpha1",
        kind: "GitHubApp",
        metadata: { name: "installed" },
        spec: { appId, privateKeySecretRef: { name: "installed-app-key" }, baseUrl: t.simUrl },
      },
      {
        apiVersion: "ghat.dev/v1alpha1",
        kind: "GitHubAppToken",
        metadata: { name: "smoke" },
        spec: {
          appRef: { name: "installed" },
          installation: { owner: "acme" },
          permissions: { contents: "read" },
          secrets: [{ name: "smoke-token" }, { name: "smoke-flux", format: "basicAuth" }],
        },
      },
    ];
    const applied = await k(["apply", "-f", "-"], manifests.map((m) => stringify(m)).join("---\n"));
    expect(applied.code, applied.stderr).toBe(0);
    const waited = await k(["wait", "--for=condition=Ready", "ghat/smoke", "--timeout=60s"]);
    expect(waited.code, waited.stderr).toBe(0);

    const token = await secretToken("smoke-token");
    expect(token).toMatch(/^ghs_/);
    expect((await admin("check-token", { token, repository: "acme/app" })).live).toBe(true);
    const flux = await k(["get", "secret", "smoke-flux", "-o", "jsonpath={.data.password}"]);
    expect(Buffer.from(flux.stdout, "base64").toString("utf8")).toBe(token);
    const printed = await k(["get", "ghat", "smoke"]);
    expect(printed.stdout).toMatch(/smoke\s+True\s+Issued/);

    expect((await k(["delete", "ghat", "smoke", "--timeout=60s"])).code).toBe(0);
    await expect
      .poll(async () => (await admin("check-token", { token })).live, { timeout: 30_000 })
      .toBe(false);
    expect((await k(["get", "secret", "smoke-token"])).code).not.toBe(0);
  });
});

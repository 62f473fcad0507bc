import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname, tmpdir } from "node:os";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { systemClock } from "../../src/clock.ts";
import { KubeClient } from "../../src/kube/kube.ts";
import { revision, version, versionLine } from "../../src/version.ts";

// Each case starts a Node process (the operator's imports take seconds on a busy machine).
vi.setConfig({ testTimeout: 90_000 });

const cli = new URL("../../src/cli.ts", import.meta.url).pathname;
const pkgVersion = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** The environment of a machine with no kube access and no GHAT_* settings. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("GHAT_") || k.startsWith("KUBERNETES_") || k === "KUBECONFIG" || k === "POD_NAME")
      continue;
    env[k] = v;
  }
  return { ...env, HOME: tmpdir(), NODE_OPTIONS: "", ...extra };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node src/cli.ts ...args` (Node's type stripping) and collects what it wrote. */
function ghat(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cli, ...args],
      { env: cleanEnv(env), timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("version", () => {
  it("comes from package.json, the revision from GHAT_REVISION", () => {
    expect(version).toBe(pkgVersion);
    expect(revision({ GHAT_REVISION: "abc123" })).toBe("abc123");
    expect(revision({})).toBe("unknown");
    expect(versionLine({ GHAT_REVISION: "abc123" })).toBe(`ghat ${pkgVersion} (abc123)`);
  });

  it.each([["--version"], ["-v"], ["version"], ["run", "--version"]])(
    "ghat %s prints it and exits 0",
    async (...args) => {
      const r = await ghat(args, { GHAT_REVISION: "0123abc" });
      expect(r).toEqual({ code: 0, stdout: `ghat ${pkgVersion} (0123abc)\n`, stderr: "" });
    },
  );

  it("without GHAT_REVISION the revision is unknown", async () => {
    expect((await ghat(["--version"])).stdout).toBe(`ghat ${pkgVersion} (unknown)\n`);
  });
});

describe("--help on every command", () => {
  it.each([
    [["--help"], "Usage: ghat [command]"],
    [["-h"], "Usage: ghat [command]"],
    [["run", "--help"], "Usage: ghat run [flags]"],
    [["sim", "--help"], "Usage: ghat sim"],
    [["sim", "-h"], "Usage: ghat sim"],
    [["cluster", "--help"], "Usage: ghat cluster"],
    [["cluster", "up", "--help"], "Usage: ghat cluster"],
    [["cluster", "down", "--help"], "Usage: ghat cluster"],
    [["cluster", "status", "-h"], "Usage: ghat cluster"],
    [["sandbox", "--help"], "Usage: ghat sandbox"],
    [["help", "sim"], "Usage: ghat sim"],
  ])("ghat %j prints usage and exits 0", async (args, head) => {
    const r = await ghat(args);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith(head)).toBe(true);
  });

  it("ghat run -h shows the defaults", async () => {
    const r = await ghat(["run", "-h"]);
    expect(r.stdout).toMatch(/--workers int .*\(default 4\)/);
    expect(r.stdout).toMatch(/--leader-elect .*\(default false\)/);
    expect(r.stdout).toMatch(/--health-port int .*\(default 8081\)/);
  });
});

describe("ghat run refuses what it cannot use, in one line each, with exit code 2", () => {
  it("a bad value names the flag", async () => {
    const r = await ghat(["run", "--workers", "x"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('ghat: invalid value for --workers: expected a number (got "x")\n');
  });

  it("an unknown flag is named", async () => {
    const r = await ghat(["run", "--kubeconfig", "/k", "--no-such-flag"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("ghat: unknown flag --no-such-flag\n");
  });

  it("flags without a command are the operator's", async () => {
    const r = await ghat(["--leader-elect=nope"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^ghat: invalid value for --leader-elect: /);
  });

  it("no kubeconfig outside a cluster: one clear line, no stack trace", async () => {
    const r = await ghat(["run", "--leader-elect"]);
    expect(r).toEqual({
      code: 2,
      stdout: "",
      stderr: "ghat: no kubeconfig: pass --kubeconfig or set KUBECONFIG, or run in a cluster\n",
    });
  });

  it("a kubeconfig that does not exist", async () => {
    const r = await ghat(["run"], { KUBECONFIG: "/nonexistent/kubeconfig" });
    expect(r).toMatchObject({ code: 2, stderr: "ghat: kubeconfig /nonexistent/kubeconfig does not exist\n" });
  });
});

// KubeClient.event against a stand-in API server (belongs with the kube tests; kept here with
// the other operator-identity checks).
describe("events name the replica that recorded them", () => {
  let server: Server;
  const bodies: Record<string, unknown>[] = [];

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      let data = "";
      req.on("data", (c) => {
        data += String(c);
      });
      req.on("end", () => {
        const body = JSON.parse(data || "{}") as Record<string, unknown>;
        bodies.push(body);
        res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify(body));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  function client(instance?: string): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: "c",
          server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          skipTLSVerify: true,
        },
      ],
      users: [{ name: "u" }],
      contexts: [{ name: "c", cluster: "c", user: "u" }],
      currentContext: "c",
    });
    return instance === undefined
      ? new KubeClient(kc, systemClock)
      : new KubeClient(kc, systemClock, instance);
  }

  it("reportingInstance and source.host are the instance passed in", async () => {
    bodies.length = 0;
    await client("ghat-6b7c9-xk2lp").event(
      { kind: "GitHubAppToken", namespace: "team", name: "ci" },
      "Normal",
      "Issued",
      "minted",
    );
    expect(bodies[0]).toMatchObject({
      reportingComponent: "ghat.dev/controller",
      reportingInstance: "ghat-6b7c9-xk2lp",
      source: { component: "ghat", host: "ghat-6b7c9-xk2lp" },
    });
  });

  /** The body of the Event a default client posts. */
  async function eventBody() {
    bodies.length = 0;
    await client().event({ kind: "GitHubAppToken", namespace: "team", name: "ci" }, "Normal", "Issued", "m");
    return bodies[0];
  }

  it("default: POD_NAME, else the host name", async () => {
    const before = process.env.POD_NAME;
    try {
      delete process.env.POD_NAME;
      expect(await eventBody()).toMatchObject({
        reportingInstance: hostname(),
        source: { host: hostname() },
      });
      process.env.POD_NAME = "pod-a";
      expect(await eventBody()).toMatchObject({ reportingInstance: "pod-a", source: { host: "pod-a" } });
    } finally {
      if (before === undefined) delete process.env.POD_NAME;
      else process.env.POD_NAME = before;
    }
  });
});

import { hostname } from "node:os";
import { describe, expect, it } from "vitest";
import { ConfigError, kubeAccessProblem, parseConfig, startupSummary, usage } from "../../src/config.ts";

/** The problems parseConfig reports, or [] when it accepts the input. */
function problems(argv: string[], env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(argv, env);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
}

describe("boolean flags", () => {
  it.each([
    [["--leader-elect"], true],
    [["--leader-elect=true"], true],
    [["--leader-elect=false"], false],
    [["--leader-elect", "true"], true],
    [["--leader-elect", "false"], false],
    [["--leader-elect=0"], false],
    [["--leader-elect=T"], true],
    [[], false],
  ])("%j sets leaderElect to %s", (argv, want) => {
    expect(parseConfig(argv, {}).leaderElect).toBe(want);
  });

  it("a bare boolean does not swallow the next flag", () => {
    const c = parseConfig(["--leader-elect", "--workers", "3", "--workloads", "--namespaces", "a,b"], {});
    expect(c).toMatchObject({ leaderElect: true, workers: 3, workloads: true, namespaces: ["a", "b"] });
  });

  it("--workloads=false and --workloads false turn workload restarts off; the default is on", () => {
    expect(parseConfig(["--workloads=false"], {}).workloads).toBe(false);
    expect(parseConfig(["--workloads", "false"], {}).workloads).toBe(false);
    expect(parseConfig([], {}).workloads).toBe(true);
  });

  it("GHAT_* variables still set booleans, and a flag wins over them", () => {
    expect(parseConfig([], { GHAT_LEADER_ELECT: "true" }).leaderElect).toBe(true);
    expect(parseConfig([], { GHAT_WORKLOADS: "false" }).workloads).toBe(false);
    expect(parseConfig(["--leader-elect=false"], { GHAT_LEADER_ELECT: "true" }).leaderElect).toBe(false);
    expect(parseConfig(["--leader-elect"], { GHAT_LEADER_ELECT: "false" }).leaderElect).toBe(true);
  });

  it("refuses a boolean that is none", () => {
    expect(problems(["--leader-elect=maybe"])).toEqual([
      'invalid value for --leader-elect: expected one of true, false (got "maybe")',
    ]);
  });
});

describe("other flags and variables", () => {
  it("reads --flag value, --flag=value, GHAT_* and the standard variables", () => {
    const c = parseConfig(["--workers", "8", "--log-level=debug", "--lease-duration", "30s"], {
      GHAT_METRICS_PORT: "9090",
      KUBECONFIG: "/k",
      POD_NAMESPACE: "ops",
    });
    expect(c).toMatchObject({
      workers: 8,
      logLevel: "debug",
      leaseDurationMs: 30_000,
      metricsPort: 9090,
      kubeconfig: "/k",
      operatorNamespace: "ops",
    });
  });

  it("GHAT_KUBECONFIG wins over KUBECONFIG and --kubeconfig over both", () => {
    expect(parseConfig([], { GHAT_KUBECONFIG: "/a", KUBECONFIG: "/b" }).kubeconfig).toBe("/a");
    expect(parseConfig(["--kubeconfig", "/c"], { GHAT_KUBECONFIG: "/a" }).kubeconfig).toBe("/c");
  });

  it("the defaults", () => {
    expect(parseConfig([], {})).toMatchObject({
      namespaces: [],
      operatorNamespace: "ghat-system",
      workers: 4,
      healthPort: 8081,
      metricsPort: 8080,
      leaderElect: false,
      workloads: true,
      leaderElectionId: "ghat-leader",
    });
  });
});

describe("errors name the flag", () => {
  it("a bad value names the flag, not the schema key", () => {
    const p = problems(["--workers", "x"]);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^invalid value for --workers: /);
    expect(p[0]).not.toContain("→ at workers");
  });

  it("a bad value from the environment names the variable", () => {
    expect(problems([], { GHAT_HEALTH_PORT: "http" })).toEqual([
      'invalid value for GHAT_HEALTH_PORT: expected a number (got "http")',
    ]);
  });

  it("one line per problem, unknown flags named as given", () => {
    const p = problems(["--wrokers", "2", "--log-level", "loud", "--workers=0", "-x"]);
    expect(p).toEqual([
      "unknown flag --wrokers",
      'unexpected argument "2"',
      "unknown flag -x",
      'invalid value for --workers: expected number to be >=1 (got "0")',
      'invalid value for --log-level: expected one of trace, debug, info, warn, error (got "loud")',
    ]);
    for (const line of p) expect(line).not.toContain("\n");
  });

  it("a flag without its value says so", () => {
    expect(problems(["--kubeconfig"])).toEqual(["flag --kubeconfig needs a value"]);
    expect(problems(["--namespaces", "--leader-elect"])).toEqual(["flag --namespaces needs a value"]);
  });

  it("a bad duration names the flag", () => {
    expect(problems(["--lease-duration=15"])[0]).toMatch(
      /^invalid value for --lease-duration: must be a duration/,
    );
  });
});

describe("usage", () => {
  const text = usage();

  it("lists every flag with its default and variable", () => {
    expect(text).toMatch(/--workers int +Concurrent reconciles \(default 4\) \[\$GHAT_WORKERS\]/);
    expect(text).toMatch(/--operator-namespace string .*\(default "ghat-system"\).*\$POD_NAMESPACE/);
    expect(text).toMatch(/--leader-elect +Only the holder .*\(default false\)/);
    expect(text).toMatch(/--workloads +.*\(default true\)/);
    expect(text).toMatch(/--revoke-superseded-after duration .*\(default 5m\)/);
    expect(text).toMatch(/--log-level string .*one of trace, debug, info, warn, error.*\(default "info"\)/);
    expect(text).toMatch(/--kubeconfig string .*\$KUBECONFIG/);
  });

  it("shows a default for every flag that has one", () => {
    const flagLines = text.split("\n").filter((l) => /^ {2}--[a-z]/.test(l) && !/--help|--version/.test(l));
    const noDefault = flagLines.filter((l) => !l.includes("(default")).map((l) => l.trim().split(" ")[0]);
    // --leader-election-namespace says "(default: operator namespace)" in its description.
    expect(noDefault).toEqual(["--kubeconfig", "--namespaces", "--pkcs11-module"]);
  });
});

describe("kubeAccessProblem", () => {
  it("outside a cluster without a kubeconfig: one clear line", () => {
    expect(kubeAccessProblem({}, {})).toBe(
      "no kubeconfig: pass --kubeconfig or set KUBECONFIG, or run in a cluster",
    );
  });
  it("in a cluster, or with an existing kubeconfig: none", () => {
    expect(kubeAccessProblem({}, { KUBERNETES_SERVICE_HOST: "10.0.0.1" })).toBeUndefined();
    expect(kubeAccessProblem({ kubeconfig: "/k" }, {}, () => true)).toBeUndefined();
  });
  it("a kubeconfig that does not exist is named", () => {
    expect(kubeAccessProblem({ kubeconfig: "/nope" }, {}, () => false)).toBe(
      "kubeconfig /nope does not exist",
    );
  });
});

describe("startupSummary and instance", () => {
  it("states namespaces, leader election with the lease, and the operator namespace", () => {
    const c = parseConfig(["--leader-elect", "--namespaces", "a,b", "--operator-namespace", "ops"], {
      POD_NAME: "ghat-7d9f-abcde",
    });
    expect(startupSummary(c)).toMatchObject({
      namespaces: ["a", "b"],
      operatorNamespace: "ops",
      leaderElect: true,
      lease: "ops/ghat-leader",
      instance: "ghat-7d9f-abcde",
    });
  });
  it("says all namespaces and names no lease without leader election", () => {
    const s = startupSummary(parseConfig([], {}));
    expect(s).toMatchObject({ namespaces: "all", leaderElect: false, operatorNamespace: "ghat-system" });
    expect(s).not.toHaveProperty("lease");
  });
  it("the instance is POD_NAME, else the host name", () => {
    expect(parseConfig([], { POD_NAME: "p-1" }).instance).toBe("p-1");
    expect(parseConfig([], {}).instance).toBe(hostname());
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FaultRule } from "../../src/sim/faults.ts";
import { kubectl } from "../support/cluster.ts";
import { monitorTokens, recovered } from "./faultkit.ts";
import { useOperator, writeLocal } from "./fixture.ts";
import { leaks, tokenYaml } from "./operator.ts";
import type { OperatorProcess } from "./processes.ts";

/**
 * Soak: tokens rotating under random faults for SOAK_MINUTES (CI: 1.5; `make soak`: 30).
 * Phases alternate between a random fault and a calm spell; every calm spell must bring every
 * token back within the bound, and the Monitor's invariants hold throughout. Every violation
 * is written to .local/soak.json and fails the run.
 */
const minutes = Number(process.env.SOAK_MINUTES ?? "1.5");
const seed = Number(process.env.SOAK_SEED ?? Date.now() % 100_000);
const tokens = Number(process.env.SOAK_TOKENS ?? "8");
const minMs = 6_000;
const recoveryBoundMs = 10_000;
/** --github-timeout of the operator under test. */
const githubTimeoutMs = 2_000;
/**
 * How late a refresh may land once GitHub answers again: one retry floor (1 s for this
 * policy). A request already on the wire when a slow-GitHub fault clears can still time out,
 * so after those phases add the request timeout.
 */
const graceMs = (rule?: FaultRule) => 1_000 + (rule?.fault.kind === "latency" ? githubTimeoutMs : 0);

/** A small deterministic generator, so a failing run can be replayed with SOAK_SEED. */
function rng(s: number) {
  let x = s >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

type Phase =
  | { kind: "github"; label: string; rule: FaultRule; outage: boolean }
  | { kind: "watchDrop" }
  | { kind: "crash" };

const phases: Phase[] = [
  {
    kind: "github",
    label: "5xx on every route, 1 in 5",
    rule: { route: "*", fault: { kind: "status", status: 502 }, probability: 0.2 },
    outage: true,
  },
  {
    kind: "github",
    label: "GitHub down (503)",
    rule: { route: "*", fault: { kind: "status", status: 503 } },
    outage: true,
  },
  {
    kind: "github",
    label: "connection resets, 1 in 3",
    rule: { route: "*", fault: { kind: "reset" }, probability: 0.3 },
    outage: true,
  },
  {
    kind: "github",
    label: "slow GitHub (300 ms)",
    rule: { route: "*", fault: { kind: "latency", ms: 300 } },
    outage: false,
  },
  {
    kind: "github",
    label: "timeouts, 1 in 4",
    rule: { route: "*", fault: { kind: "latency", ms: 3_000 }, probability: 0.25 },
    outage: true,
  },
  {
    kind: "github",
    label: "secondary rate limit, retry-after 2 s",
    rule: { route: "*", fault: { kind: "secondaryRateLimit", retryAfterSeconds: 2 }, count: 3 },
    outage: true,
  },
  {
    kind: "github",
    label: "replication lag",
    rule: { route: "apps/create-installation-access-token", fault: { kind: "replicationLag", ms: 2_000 } },
    outage: false,
  },
  { kind: "watchDrop" },
  { kind: "crash" },
];

describe(`soak: ${minutes} min of random faults (seed ${seed})`, () => {
  const fx = useOperator({ tokenLifetimeSeconds: 20, operatorNamespace: true, proxy: true });
  const { kube, procs } = fx;
  let op: OperatorProcess;
  const start = () =>
    fx.spawn(["--revoke-superseded-after", "3s", "--github-timeout", `${githubTimeoutMs / 1000}s`]);

  beforeAll(() => {
    op = start();
  });
  afterAll(() => {
    // For diagnosing a violation: every operator's log lines (tokens never appear in them).
    writeLocal("soak-operator.log", procs.flatMap((p) => p.lines).join("\n"));
  });

  it(
    "reports no invariant violation",
    async () => {
      const random = rng(seed);
      const ns = await fx.withApp("soak");
      const names = Array.from({ length: tokens }, (_, i) => `s${i}`);
      const permissions = [{ contents: "read" }, { issues: "write" }, { pull_requests: "read" }];
      for (const [i, name] of names.entries()) {
        const spec = {
          permissions: permissions[i % permissions.length],
          // Half share a scope with a sibling (sharing on), half mint their own.
          ...(i % 2 === 0 ? {} : { sharing: "None" }),
          refreshPolicy: { refreshBefore: "12s", minRemainingLifetime: "6s" },
        };
        expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenYaml(name, spec) })).code).toBe(
          0,
        );
      }
      const monitor = monitorTokens(kube, fx.github.sim, ns, names, minMs);
      await recovered(kube, fx.github.sim, ns, names, minMs, 60_000);
      monitor.start();
      const log: Record<string, unknown>[] = [];
      const violations: string[] = [];
      const until = Date.now() + minutes * 60_000;
      while (Date.now() < until) {
        const phase = phases[Math.floor(random() * phases.length)] ?? { kind: "watchDrop" };
        const lengthMs = 3_000 + Math.floor(random() * 9_000);
        const from = Date.now();
        let label: string;
        monitor.outage();
        if (phase.kind === "github") {
          label = phase.label;
          if (!phase.outage) monitor.restored(graceMs(phase.rule));
          fx.github.sim.faults.add(phase.rule);
          await expect
            .poll(() => Date.now() - from, { timeout: lengthMs + 5_000, interval: 250 })
            .toBeGreaterThan(lengthMs);
          fx.github.sim.faults.clear();
        } else if (phase.kind === "watchDrop") {
          label = "watch connections dropped";
          fx.proxy.dropAll();
        } else {
          label = "operator SIGKILLed and restarted";
          op.kill("SIGKILL");
          await op.exited;
          op = start();
          await op.waitFor("Started ghat", 30_000);
        }
        monitor.restored(graceMs(phase.kind === "github" ? phase.rule : undefined));
        let recoveryMs: number | undefined;
        try {
          recoveryMs = await recovered(kube, fx.github.sim, ns, names, minMs, recoveryBoundMs);
        } catch (err) {
          violations.push(`${new Date().toISOString()} after ${label}: ${(err as Error).message}`);
        }
        if (op.proc.exitCode !== null) {
          violations.push(
            `${new Date().toISOString()} operator exited (${op.proc.exitCode}) during: ${label}`,
          );
          op = start();
          await op.waitFor("Started ghat", 30_000);
        }
        log.push({ phase: label, lengthMs: Date.now() - from, recoveryMs });
      }
      await monitor.stop();
      violations.push(...monitor.violations);
      const leaked = await leaks(
        fx.github,
        procs.flatMap((p) => p.lines),
      );
      violations.push(...leaked.map((l) => `leaked ${l}`));
      const report = {
        minutes,
        seed,
        tokens,
        phases: log.length,
        mints: fx.github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0,
        violations,
        log,
      };
      writeLocal("soak.json", `${JSON.stringify(report, null, 2)}\n`);
      expect(log.length).toBeGreaterThan(2);
      expect(violations).toEqual([]);
    },
    minutes * 60_000 + 180_000,
  );
});

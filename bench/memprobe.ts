/**
 * `node bench/memprobe.ts`: one operator (the shipped bundle) with N tokens, for profiling.
 *
 *   N=1200          tokens (500 per namespace)
 *   IDLE_S=60       seconds of idle CPU measured after all are Ready and settled
 *   PROF_DIR=dir    write a V8 CPU profile of the whole run (--cpu-prof) and a heap snapshot
 *                   at the end of the idle window (--heapsnapshot-signal) into dir
 *   OPFLAGS="..."   extra operator flags
 */
import { startControlPlane } from "../src/devcluster/controlplane.ts";
import { bundle, github, kube, metricSum, Operator } from "./lib.ts";
import { burst, type IdleResult, idleWindow, installCrds } from "./scenarios.ts";

const n = Number(process.env.N ?? 1200);
const idleS = Number(process.env.IDLE_S ?? 60);
const profDir = process.env.PROF_DIR;
const say = (...parts: unknown[]) => process.stdout.write(`${parts.join(" ")}\n`);
const show = (label: string, r: IdleResult) =>
  say(
    label,
    `rss ${r.rssMiB.toFixed(1)} heapUsed ${r.heapUsedMiB.toFixed(1)} heapTotal ${r.heapTotalMiB.toFixed(1)}`,
    `external ${r.externalMiB.toFixed(1)} cpu ${r.cpuS.toFixed(2)} s over ${r.windowS} s`,
    `threads ${JSON.stringify(r.cpuByThread)} requests ${JSON.stringify(r.requests)}`,
    `mappings ${JSON.stringify(r.mappings)}`,
  );
const cp = await startControlPlane();
try {
  const k = kube(cp.kubeconfigPath);
  await installCrds(k);
  const gh = await github({ rateLimit: false });
  const extra = (process.env.OPFLAGS ?? "").split(" ").filter(Boolean);
  const nodeFlags = profDir
    ? [
        "--cpu-prof",
        `--cpu-prof-dir=${profDir}`,
        "--heapsnapshot-signal=SIGUSR2",
        `--diagnostic-dir=${profDir}`,
      ]
    : [];
  const op = new Operator(cp.kubeconfigPath, ["--workers", "16", ...extra], bundle, nodeFlags);
  await op.started;
  show("empty", await idleWindow(op, 0, 5, 2));
  const r = await burst(k, op, gh, n, "probe");
  say(
    "ready",
    r.allReadyS,
    "cpu",
    r.operatorCpuS.toFixed(2),
    "p99",
    r.p99Ms,
    JSON.stringify(r.operatorCpuByThread),
  );
  const metrics = await op.metrics();
  say(
    "reconciles",
    metricSum(metrics, "ghat_reconcile_duration_seconds_count"),
    "kube requests",
    metricSum(metrics, "ghat_kube_requests_total"),
    "github requests",
    metricSum(metrics, "ghat_github_requests_total"),
  );
  show("idle", await idleWindow(op, n, idleS, 20));
  if (profDir) {
    op.proc.kill("SIGUSR2");
    // The snapshot is written by the operator in the background; give it time before the stop.
    await new Promise((resolve) => setTimeout(resolve, 15_000));
  }
  await op.stop();
  await gh.sim.close();
} finally {
  await cp.stop();
}

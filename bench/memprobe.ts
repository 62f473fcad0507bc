/**
 * `node bench/memprobe.ts`: one operator (the shipped bundle) with N tokens, for profiling.
 *
 *   N=1200          tokens (500 per namespace)
 *   IDLE_S=60       seconds of idle CPU measured after all are Ready and settled
 *   PROF_DIR=dir    write a V8 CPU profile of the whole run (--cpu-prof) and a heap snapshot
 *                   at the end of the idle window (--heapsnapshot-signal) into dir
 *   OPFLAGS="..."   extra operator flags
 */
import { readdirSync, readFileSync } from "node:fs";
import { startControlPlane } from "../src/devcluster/controlplane.ts";
import { bundle, diff, github, kube, metricSum, Operator, until } from "./lib.ts";
import { burst, installCrds } from "./scenarios.ts";

function userSys(pid: number): [number, number] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return [Number(f[11]) / 100, Number(f[12]) / 100];
}

/** ghat_kube_requests_total by verb and resource. */
function requestsOf(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^ghat_kube_requests_total\{verb="(\w+)",resource="([^"]*)"\} (\S+)$/gm))
    out[`${m[1]} ${m[2]}`] = Number(m[3]);
  for (const m of text.matchAll(/^ghat_github_requests_total\{([^}]*)\} (\S+)$/gm))
    out[`github ${m[1]}`] = Number(m[2]);
  return out;
}

/** Resident KiB by mapping: the node binary, [heap] (malloc), anonymous (V8 heap, arenas), others. */
function rssByMapping(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let name = "";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const m = line.match(/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/);
    if (m) name = (m[1] || "[anon]").split("/").pop() ?? "";
    else if (line.startsWith("Rss:")) out[name] = (out[name] ?? 0) + Number(line.split(/\s+/)[1]);
  }
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v >= 1024));
}

/** CPU seconds per thread name (threads of one name summed). */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
  }
  return out;
}

const n = Number(process.env.N ?? 1200);
const idleS = Number(process.env.IDLE_S ?? 60);
const profDir = process.env.PROF_DIR;
const say = (...parts: unknown[]) => process.stdout.write(`${parts.join(" ")}\n`);
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
  const show = async (label: string) => {
    const m = await op.metrics();
    const g = (name: string) => (metricSum(m, name) / 2 ** 20).toFixed(1);
    say(
      label,
      "rss",
      (op.memory().rssKiB / 1024).toFixed(1),
      "peak",
      (op.memory().peakKiB / 1024).toFixed(1),
      "heapUsed",
      g("nodejs_heap_size_used_bytes"),
      "heapTotal",
      g("nodejs_heap_size_total_bytes"),
      "external",
      g("nodejs_external_memory_bytes"),
    );
  };
  await show("empty");
  const r = await burst(k, op, gh, n, "probe");
  say("ready", r.allReadyS, "cpu", r.operatorCpuS.toFixed(2), "p99", r.p99Ms);
  await show("after burst");
  await new Promise((r) => setTimeout(r, 20_000));
  const threads0 = threadCpu(op.proc.pid ?? 0);
  const stat0 = userSys(op.proc.pid ?? 0);
  const requests0 = requestsOf(await op.metrics());
  const cpu0 = op.cpuSeconds();
  const t0 = Date.now();
  await until(() => Date.now() - t0 >= idleS * 1000, idleS * 1000 + 5000, 1000);
  say("idle cpu", (op.cpuSeconds() - cpu0).toFixed(2), "s over", idleS, "s");
  const stat1 = userSys(op.proc.pid ?? 0);
  say("  user", (stat1[0] - stat0[0]).toFixed(2), "system", (stat1[1] - stat0[1]).toFixed(2));
  say("  requests", JSON.stringify(diff(requestsOf(await op.metrics()), requests0)));
  const threads1 = threadCpu(op.proc.pid ?? 0);
  for (const [name, s1] of threads1) {
    const d = s1 - (threads0.get(name) ?? 0);
    if (d > 0) say("  thread", name, d.toFixed(2));
  }
  await show("idle");
  say("  mappings", JSON.stringify(rssByMapping(op.proc.pid ?? 0)));
  if (profDir) {
    op.proc.kill("SIGUSR2");
    await new Promise((r) => setTimeout(r, 15_000));
  }
  await op.stop();
  await gh.sim.close();
} finally {
  await cp.stop();
}

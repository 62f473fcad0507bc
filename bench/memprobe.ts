// `node bench/memprobe.ts` (N=1000, SNAP=1 for a heap snapshot): the operator's memory breakdown with N tokens.
import { startControlPlane } from "../src/devcluster/controlplane.ts";
import { github, kube, metricSum, Operator } from "./lib.ts";
import { burst, installCrds } from "./scenarios.ts";

const n = Number(process.env.N ?? 1000);
const cp = await startControlPlane();
try {
  const k = kube(cp.kubeconfigPath);
  await installCrds(k);
  const gh = await github({ rateLimit: false });
  const extra = (process.env.OPFLAGS ?? "").split(" ").filter(Boolean);
  const op = new Operator(
    cp.kubeconfigPath,
    ["--workers", "16", ...extra],
    new URL("../dist/main.js", import.meta.url).pathname,
  );
  await op.started;
  const say = (...parts: unknown[]) => process.stdout.write(`${parts.join(" ")}\n`);
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
  await show("idle");
  const r = await burst(k, op, gh, n, "probe");
  say("ready", r.allReadyS, "cpu", r.operatorCpuS);
  await show("after");
  if (process.env.SNAP) {
    op.proc.kill("SIGUSR2");
    await new Promise((r) => setTimeout(r, 15000));
  }
  await op.stop();
  await gh.sim.close();
} finally {
  await cp.stop();
}

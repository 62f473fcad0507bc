/**
 * `make bench`: a fresh control plane, simulators with GitHub-like latency, and the operator
 * as the image runs it (dist/ghat.mjs with the Dockerfile's Node flags and environment) in its
 * own process; runs every scenario and writes bench/results.md with each target of issue #18.
 *
 *   BENCH_SIZES=100,1000       burst sizes (cumulative: the operator keeps earlier tokens)
 *   BENCH_IDLE_TOKENS=1200     tokens held during the idle window (topped up after the bursts)
 *   BENCH_IDLE_S=600           the idle window
 *   BENCH_LARGE=5000           tokens held for the large-memory figure (0: skip)
 *   BENCH_LATENCY_MS=50        latency the simulators add to every GitHub request
 *   BENCH_WORKERS=16           operator --workers
 *   BENCH_LIFETIME_S=30        token lifetime in the steady-state and sharing scenarios
 *   BENCH_OUT=bench/results.md
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { startControlPlane } from "../src/devcluster/controlplane.ts";
import { bundle, cpuSecondsOf, github, imageCommand, kube, Operator } from "./lib.ts";
import {
  type BurstResult,
  burst,
  deleteNamespaces,
  type IdleResult,
  idle,
  idleWindow,
  installCrds,
  type RestartResult,
  restart,
  type SharingResult,
  type SteadyResult,
  sharing,
  steady,
} from "./scenarios.ts";

const env = process.env;
const sizes = (env.BENCH_SIZES ?? "100,1000").split(",").map(Number);
const idleTokens = Number(env.BENCH_IDLE_TOKENS ?? 1200);
const idleS = Number(env.BENCH_IDLE_S ?? 600);
const large = Number(env.BENCH_LARGE ?? 5000);
const latencyMs = Number(env.BENCH_LATENCY_MS ?? 50);
const workers = env.BENCH_WORKERS ?? "16";
const lifetimeS = Number(env.BENCH_LIFETIME_S ?? 30);
const out = env.BENCH_OUT ?? new URL("./results.md", import.meta.url).pathname;
const say = (msg: string) =>
  process.stderr.write(`[bench] ${new Date().toISOString().slice(11, 19)} ${msg}\n`);

/** The strongest peer (Go, controller-runtime), measured on this machine (issue #18). */
const peer = { burstCpuPer100: 3.5 / 5, idleCpuPer10Min: 0.36, idleRssMiB: 63, writesPerToken: 2 };

async function main() {
  const started = new Date();
  say("starting control plane");
  const cp = await startControlPlane();
  const k = kube(cp.kubeconfigPath);
  const apiserverPid = () =>
    Number(
      execFileSync("cat", [`${cp.workDir}/kube-apiserver.pid`])
        .toString()
        .trim(),
    );
  try {
    await installCrds(k);
    const slow = await github({ rateLimit: false });
    slow.sim.faults.add({ route: "*", fault: { kind: "latency", ms: latencyMs } });
    const short = await github({ rateLimit: false, tokenLifetimeSeconds: lifetimeS });
    short.sim.faults.add({ route: "*", fault: { kind: "latency", ms: latencyMs } });
    // --leader-elect as the chart runs it (two replicas, with its default timings, which are
    // src/config.ts's): the Lease renewals are part of idle.
    const flags = [
      "--workers",
      workers,
      "--log-level",
      "info",
      "--revoke-superseded-after",
      "5s",
      "--leader-elect",
    ];
    let op = new Operator(cp.kubeconfigPath, flags, bundle);
    await op.started;
    // An idle operator with no token yet: Node plus the code it loads.
    const empty = await idleWindow(op, 0, 10, 5);

    say(`steady state: 100 tokens, ${lifetimeS} s lifetime, 3 rotations each`);
    const steadyResult = await steady(k, op, short, {
      tokens: 100,
      lifetimeS,
      rotationsPerToken: 3,
      ns: "bench-steady",
    });
    say("sharing: 50 tokens of one scope, 3 rotations");
    const sharingResult = await sharing(k, short, {
      tokens: 50,
      lifetimeS,
      rotations: 3,
      ns: "bench-sharing",
    });
    await deleteNamespaces(k, ["bench-steady", "bench-sharing"]);

    const bursts: BurstResult[] = [];
    let held = 0;
    const runBurst = async (n: number, prefix: string, record = true) => {
      say(`burst: ${n} tokens`);
      const apiCpu = cpuSecondsOf(apiserverPid());
      const r = await burst(k, op, slow, n, prefix);
      r.apiserverCpuS = cpuSecondsOf(apiserverPid()) - apiCpu;
      say(
        `  all Ready in ${r.allReadyS.toFixed(1)} s, p99 ${(r.p99Ms / 1000).toFixed(1)} s, operator CPU ${r.operatorCpuS.toFixed(1)} s`,
      );
      if (record) bursts.push(r);
      held += n;
    };
    for (const n of sizes) await runBurst(n, `bench-b${n}`);
    say("idle: 20 tokens one at a time");
    const idleLatency = await idle(k, slow, 20, "bench-idle");
    held += 20;
    if (held < idleTokens) await runBurst(idleTokens - held, "bench-fill", false);
    say(`idle window: ${held} tokens, ${idleS} s`);
    const idleResult = await idleWindow(op, held, idleS);
    say(`  CPU ${idleResult.cpuS.toFixed(2)} s, RSS ${idleResult.rssMiB.toFixed(1)} MiB`);
    let largeResult: IdleResult | undefined;
    if (large > held) {
      await runBurst(large - held, "bench-large", false);
      say(`memory with ${held} tokens`);
      largeResult = await idleWindow(op, held, 30, 60);
      say(`  RSS ${largeResult.rssMiB.toFixed(1)} MiB`);
    }
    say(`restart over ${held} tokens`);
    const restarted = await restart(k, op, [slow, short], held, flags, bundle);
    op = restarted.op;
    await op.stop();
    write({
      started,
      finished: new Date(),
      bursts,
      idleLatency,
      empty,
      idle: idleResult,
      large: largeResult,
      restart: restarted.result,
      steady: steadyResult,
      sharing: sharingResult,
      memory: cp.memory(),
    });
    await slow.sim.close();
    await short.sim.close();
  } finally {
    await cp.stop();
  }
}

interface Results {
  started: Date;
  finished: Date;
  bursts: BurstResult[];
  idleLatency: { p50Ms: number; maxMs: number };
  empty: IdleResult;
  idle: IdleResult;
  large: IdleResult | undefined;
  restart: RestartResult;
  steady: SteadyResult;
  sharing: SharingResult;
  memory: Record<string, number>;
}

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "–");
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "–");
const kv = (r: Record<string, number>) =>
  Object.entries(r)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, v]) => `${key} ${Number.isInteger(v) ? v : v.toFixed(2)}`)
    .join(", ") || "none";
const mark = (ok: boolean) => (ok ? "met" : "**missed**");
const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
const mib = (kib: number | undefined) => f1((kib ?? 0) / 1024);

function memoryLine(r: IdleResult): string {
  const m = r.mappings;
  const other = sum(m) - (m.node ?? 0) - (m["[anon]"] ?? 0) - (m["[heap]"] ?? 0);
  return `| ${r.tokens} | ${f1(r.rssMiB)} MiB | ${mib(m.node)} | ${mib(m["[anon]"])} | ${mib(m["[heap]"])} | ${mib(other)} | ${f1(r.heapUsedMiB)} / ${f1(r.heapTotalMiB)} MiB | ${f1(r.externalMiB)} MiB |`;
}

function write(r: Results) {
  const kubeVersion = execFileSync("kubectl", ["version", "--client", "-o", "json"]).toString();
  const image = imageCommand();
  const b1000 = r.bursts.find((b) => b.tokens === 1000) ?? r.bursts.at(-1);
  const writesPerToken = b1000 ? sum(perTokenWrites(b1000)) / b1000.tokens : Number.NaN;
  const secretReads = b1000 ? (b1000.operatorRequests["get secrets"] ?? 0) / b1000.tokens : Number.NaN;
  const cpuPer100 = b1000 ? (b1000.operatorCpuS / b1000.tokens) * 100 : Number.NaN;
  const idleCpu10 = (r.idle.cpuS / r.idle.windowS) * 600;
  const restartWrites = sum(r.restart.operatorWrites);
  const lines = [
    "# ghat benchmark results",
    "",
    "Generated by `make bench` (bench/run.ts); do not edit by hand. The note at the end (bench/notes.md) is written by hand.",
    "",
    "## Machine and operator",
    "",
    `- Date: ${r.started.toISOString()} (took ${f1((r.finished.getTime() - r.started.getTime()) / 60_000)} min)`,
    `- CPU: ${cpus().length} × ${cpus()[0]?.model ?? "?"}; memory ${f1(totalmem() / 2 ** 30)} GiB`,
    `- Node ${process.version}; kube-apiserver/etcd/kube-controller-manager v1.34.4 on the same cores (local processes); kubectl ${JSON.parse(kubeVersion).clientVersion?.gitVersion ?? "?"}`,
    `- Operator: the shipped bundle \`dist/ghat.mjs\` started as the image starts it: \`node ${image.nodeFlags.join(" ")} dist/ghat.mjs\` with ${kv(Object.fromEntries(Object.entries(image.env).map(([k2, v]) => [`${k2}=${v}`, 1]))).replaceAll(" 1", "")}; \`--workers ${workers} --leader-elect\`, log level info`,
    `- GitHub simulator adding ${latencyMs} ms to every request; simulator rate limits off`,
    `- Control plane memory at the end (RSS KiB): ${kv(r.memory)}`,
    "",
    "## Targets (issue #18)",
    "",
    "| Target | Measured | Peer (Go) | |",
    "|---|---|---|---|",
    `| ≤ 3 API-server writes per new token | ${f2(writesPerToken)} (${b1000 ? kv(perTokenWrites(b1000, b1000.tokens)) : ""}) | ${peer.writesPerToken} | ${mark(writesPerToken <= 3)} |`,
    `| no Secret GET for a new token | ${f2(secretReads)} GETs per token | | ${mark(secretReads === 0)} |`,
    `| CPU per 100 tokens in a burst ≤ peer | ${f2(cpuPer100)} s (${b1000?.tokens ?? 0}-token burst) | ${f2(peer.burstCpuPer100)} s | ${mark(cpuPer100 <= peer.burstCpuPer100)} |`,
    `| idle CPU ≤ 1 s per 10 min with ${r.idle.tokens} tokens | ${f2(idleCpu10)} s | ${peer.idleCpuPer10Min} s | ${mark(idleCpu10 <= 1)} |`,
    `| RSS ≤ 90 MiB at idle with ${r.idle.tokens} tokens | ${f1(r.idle.rssMiB)} MiB | ${peer.idleRssMiB} MiB | ${mark(r.idle.rssMiB <= 90)} |`,
    `| RSS ≤ 130 MiB with ${r.large?.tokens ?? 5000} tokens | ${r.large ? `${f1(r.large.rssMiB)} MiB` : "not run"} | | ${r.large ? mark(r.large.rssMiB <= 130) : ""} |`,
    `| ${b1000?.tokens ?? 1000}-token burst: p99 apply→Ready ≤ 8 s | ${b1000 ? `${f1(b1000.p99Ms / 1000)} s` : "not run"} | | ${b1000 ? mark(b1000.p99Ms <= 8000) : ""} |`,
    `| ${b1000?.tokens ?? 1000}-token burst: all Ready ≤ 15 s | ${b1000 ? `${f1(b1000.allReadyS)} s` : "not run"} | | ${b1000 ? mark(b1000.allReadyS <= 15) : ""} |`,
    `| 0 GitHub calls and 0 writes on restart | ${r.restart.githubCalls} calls, ${restartWrites} writes | ${r.restart.tokens} mints, ${2 * r.restart.tokens} writes | ${mark(r.restart.githubCalls === 0 && restartWrites === 0)} |`,
    `| 0 writes between rotations | ${r.steady.writesBetweenRotations} (watch), ${r.steady.extraOperatorWrites} extra write requests | | ${mark(r.steady.writesBetweenRotations === 0 && r.steady.extraOperatorWrites <= 0)} |`,
    `| 1.00 mint per scope per rotation, with sharing | ${f2(r.steady.mintsPerRotation)} per rotation; shared scope: ${f2(r.sharing.mintsPerScopeRotation)} for ${r.sharing.tokens} tokens | | ${mark(r.steady.mintsPerRotation <= 1.01 && r.sharing.mintsPerScopeRotation <= 1.01)} |`,
    "",
    "## 1. Burst",
    "",
    "N tokens created at once (32 concurrent creates, sharing off so each is its own mint; the operator keeps the tokens of earlier bursts). Requests are the operator's own, from `ghat_kube_requests_total` (`list` is a cache's list page; watch streams are not counted).",
    "",
    "| N | all Ready | p50 | p95 | p99 | mints | operator CPU (per 100) | API server CPU | operator RSS peak / after | operator requests | API server requests (all clients) |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
    ...r.bursts.map(
      (b) =>
        `| ${b.tokens} | ${f1(b.allReadyS)} s | ${f1(b.p50Ms)} ms | ${f1(b.p95Ms)} ms | ${f1(b.p99Ms)} ms | ${b.mints} | ${f1(b.operatorCpuS)} s (${f2((b.operatorCpuS / b.tokens) * 100)} s) | ${f1(b.apiserverCpuS ?? Number.NaN)} s | ${f1(b.operatorPeakRssMiB)} / ${f1(b.operatorRssMiB)} MiB | ${kv(b.operatorRequests)} | ${kv(b.apiserverRequests)} |`,
    ),
    "",
    ...r.bursts.map(
      (b) => `Operator CPU by thread in the ${b.tokens}-token burst: ${kv(b.operatorCpuByThread ?? {})}.`,
    ),
    "",
    `Idle: 20 tokens created one at a time: apply→Ready p50 ${f1(r.idleLatency.p50Ms)} ms, max ${f1(r.idleLatency.maxMs)} ms.`,
    "",
    "## 2. Idle",
    "",
    `${r.idle.tokens} current tokens (one-hour lifetime), nothing changing, for ${f1(r.idle.windowS / 60)} min after a 30 s settle: operator CPU ${f2(r.idle.cpuS)} s (${kv(r.idle.cpuByThread)}); requests: ${kv(r.idle.requests)}.`,
    "",
    "## 3. Memory",
    "",
    "Resident memory at idle, by mapping: `node` is the binary's pages the process touched (V8's compilers, ICU, OpenSSL, Node's built-in JavaScript), `[anon]` holds V8's heap and malloc's arenas, `[heap]` is malloc's main heap.",
    "",
    "| tokens | RSS | node binary | [anon] | [heap] | other | V8 heap used / total | external |",
    "|---|---|---|---|---|---|---|---|",
    memoryLine(r.empty),
    memoryLine(r.idle),
    ...(r.large ? [memoryLine(r.large)] : []),
    "",
    "## 4. Steady state",
    "",
    `${r.steady.tokens} tokens (sharing off), token lifetime ${r.steady.lifetimeS} s, refreshBefore ${f1(r.steady.lifetimeS * 0.4)} s, minRemainingLifetime ${r.steady.minRemainingPolicyS} s, observed for ${f1(r.steady.windowS)} s.`,
    "",
    "| rotations | mints | mints per rotation | rotation interval | Secret writes per rotation | status writes per rotation | writes between rotations | smallest remaining lifetime seen |",
    "|---|---|---|---|---|---|---|---|",
    `| ${r.steady.rotations} | ${r.steady.mints} | ${f2(r.steady.mintsPerRotation)} | ${f1(r.steady.rotationIntervalS)} s | ${f2(r.steady.secretWritesPerRotation)} | ${f2(r.steady.statusWritesPerRotation)} | ${r.steady.writesBetweenRotations} | ${f1(r.steady.minRemainingS)} s (policy ${r.steady.minRemainingPolicyS} s) |`,
    "",
    "A rotation is one mint, one Secret write and one status write; nothing is written while a token is current. With GitHub's one-hour tokens and the default refreshBefore of 20 min (jittered up to 10% of the window earlier), a token rotates every ~38–40 min: about 1.5 mints per token-hour.",
    "",
    "## 5. Restart",
    "",
    `The operator stopped (SIGTERM) and a new one started over ${r.restart.tokens} valid tokens.`,
    "",
    "| GitHub calls | operator writes | every refresh scheduled again | peak RSS of the new process |",
    "|---|---|---|---|",
    `| ${r.restart.githubCalls} | ${kv(r.restart.operatorWrites)} | ${f1(r.restart.scheduledS)} s after start | ${f1(r.restart.operatorPeakRssMiB)} MiB |`,
    "",
    "## 6. Sharing",
    "",
    `${r.sharing.tokens} tokens in one namespace with the same scope (the default \`sharing: Namespace\`), over ${f1(r.sharing.windowS)} s.`,
    "",
    "| distinct tokens in the Secrets | mints for the scope | mints per rotation | without sharing |",
    "|---|---|---|---|",
    `| ${r.sharing.distinctTokens} | ${r.sharing.mints} | ${f2(r.sharing.mintsPerScopeRotation)} | ${r.sharing.withoutSharing} mints |`,
    "",
  ];
  // The hand-written note (bench/notes.md) goes after the generated figures.
  const noteText = readFileSync(new URL("./notes.md", import.meta.url), "utf8");
  writeFileSync(out, `${lines.join("\n")}\n${noteText}`);
  say(`wrote ${out}`);
}

/**
 * Writes that belong to the new tokens: the GitHubApp's in-use finalizer and App/ClusterApp
 * status are per App, not per token. With `per`, divided by it.
 */
function perTokenWrites(b: BurstResult, per = 1): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k2, v] of Object.entries(b.operatorWrites)) {
    if (k2 === "patch githubapps" || k2.endsWith("githubapps/status")) continue;
    out[k2] = Math.round((v / per) * 100) / 100;
  }
  return out;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});

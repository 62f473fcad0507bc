/**
 * `node bench/abprobe.ts`: two operators side by side on one control plane, each with its own
 * namespaces, bursts of new tokens sent to both at once, round after round: the machine's load
 * moves both figures together, so their ratio holds where one operator's CPU per run does not.
 *
 *   A_FLAGS / B_FLAGS   Node flags of each (default: the image's)
 *   A_ENTRY / B_ENTRY   the script each runs (default: dist/ghat.mjs, `npm run bundle`)
 *   N=600 ROUNDS=3      tokens per operator per round, rounds
 */
import { startControlPlane } from "../src/devcluster/controlplane.ts";
import { bundle, github, imageCommand, kube, Operator } from "./lib.ts";
import { burst, installCrds } from "./scenarios.ts";

const n = Number(process.env.N ?? 600);
const rounds = Number(process.env.ROUNDS ?? 3);
const per = 300;
const say = (...parts: unknown[]) => process.stdout.write(`${parts.join(" ")}\n`);
const image = imageCommand();
Object.assign(process.env, image.env);
const side = (name: "A" | "B") => ({
  name,
  entry: process.env[`${name}_ENTRY`] ?? `${bundle}`,
  flags: (process.env[`${name}_FLAGS`] ?? image.nodeFlags.join(" ")).split(" ").filter(Boolean),
});
const sides = [side("A"), side("B")];
for (const s of sides) say(s.name, s.entry, s.flags.join(" "));

const cp = await startControlPlane();
try {
  const k = kube(cp.kubeconfigPath);
  await installCrds(k);
  const gh = await github({ rateLimit: false });
  const namespaces = (s: string, r: number) =>
    Array.from({ length: Math.ceil(n / per) }, (_, i) => `ab-${s.toLowerCase()}${r}-${i}`);
  const ops = sides.map((s) => {
    const all = Array.from({ length: rounds }, (_, r) => namespaces(s.name, r)).flat();
    // Not spelled as `bundle`: the Operator would add the image's flags to the ones given.
    const entry = s.entry === bundle ? bundle.replace(/ghat\.mjs$/, "./ghat.mjs") : s.entry;
    return new Operator(
      cp.kubeconfigPath,
      ["--workers", "16", "--namespaces", all.join(",")],
      entry,
      s.flags,
    );
  });
  await Promise.all(ops.map((op) => op.started));
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const results = await Promise.all(
      sides.map((s, i) =>
        burst(k, ops[i] as Operator, gh, n, `ab-${s.name.toLowerCase()}${r}`, { perNamespace: per }),
      ),
    );
    const [a, b] = results.map((x) => x.operatorCpuS) as [number, number];
    ratios.push(b / a);
    say(
      `round ${r + 1}:`,
      `A ${((a / n) * 100).toFixed(2)} s/100 (ready ${results[0]?.allReadyS} s)`,
      `B ${((b / n) * 100).toFixed(2)} s/100 (ready ${results[1]?.allReadyS} s)`,
      `B/A ${(b / a).toFixed(2)}`,
    );
  }
  const sorted = [...ratios].sort((x, y) => x - y);
  say("median B/A", sorted[Math.floor(sorted.length / 2)]?.toFixed(2));
  // Memory once both are idle (V8's memory reducer starts after ~8 s without allocation).
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.IDLE_S ?? 30) * 1000));
  say(
    `idle, ${n * rounds} tokens each: RSS`,
    ops.map((op, i) => `${sides[i]?.name} ${(op.memory().rssKiB / 1024).toFixed(1)} MiB`).join(", "),
  );
  await Promise.all(ops.map((op) => op.stop()));
  await gh.sim.close();
} finally {
  await cp.stop();
}

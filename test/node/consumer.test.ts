import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { CoreV1Api, ListWatch, type V1Secret, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { stringify } from "yaml";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { type Simulator, startSimulator } from "../../src/sim/simulator.ts";
import { useOperator } from "../e2e/fixture.ts";
import { tokenYaml } from "../e2e/operator.ts";
import { kubeConfig, kubectl } from "../support/cluster.ts";
import { loadGitImage } from "../support/gitimage.ts";

const run = promisify(execFile);
const repo = new URL("../../", import.meta.url).pathname;

/**
 * Real consumers on the real node: Pods with git (test/support/gitimage.ts) fetch a private
 * repository from the simulator (HTTPS, private CA, git smart-HTTP) with what ghat writes,
 * while tokens live 60 s and rotate about every 20 s. A Pod that mounts the Secret never sees a
 * failed fetch across rotations; a Deployment that reads the token from an environment
 * variable is restarted by ghat (spec.rollout) onto the new token. ghat runs in-process here
 * (test/node/chart.test.ts runs it from the chart).
 */

function report(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function ok(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

const hash = (t: string) => createHash("sha256").update(t).digest("hex").slice(0, 16);
/** Tokens live 60 s: refresh 40 s before expiry (every ~20 s), never leave less than 30 s. */
const refreshPolicy = { refreshBefore: "40s", minRemainingLifetime: "30s" };
/** Longer than a mounted Secret takes to reach a Pod (≤ ~15 s with syncFrequency 10 s). */
const revokeAfter = "30s";

/** Each fetch loop logs `<label> ok|fail <sha256 prefix of the credential>`, never the credential. */
const fetchLoop = (steps: string) => `while true; do ${steps} sleep 1; done`;
const fetchStep = (label: string, credential: string, user: string) =>
  `c=${credential}; h=$(printf %s "$c" | sha256sum | cut -c1-16); ` +
  `if git ls-remote "https://${user}:$c@$REPO" >/dev/null 2>&1; then echo "${label} ok $h"; else echo "${label} fail $h"; fi;`;

interface Version {
  at: number;
  hash: string;
  token: string;
}

/** Records each distinct token a Secret holds, with when the watch saw it written. */
async function watchSecret(ns: string, name: string, key: string) {
  const seen: Version[] = [];
  const kc = kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const lw = new ListWatch<V1Secret>(
    `/api/v1/namespaces/${ns}/secrets`,
    new Watch(kc),
    () => core.listNamespacedSecret({ namespace: ns, fieldSelector: `metadata.name=${name}` }),
    false,
    undefined,
    `metadata.name=${name}`,
  );
  const record = (s: V1Secret) => {
    const token = Buffer.from(s.data?.[key] ?? "", "base64").toString();
    if (token && seen.at(-1)?.token !== token) seen.push({ at: Date.now(), hash: hash(token), token });
  };
  lw.on("add", record);
  lw.on("update", record);
  await lw.start();
  return { seen, stop: () => lw.stop() };
}

/** `kubectl logs --timestamps` as [ms, text] lines. */
async function logLines(ns: string, target: string): Promise<{ at: number; text: string }[]> {
  const r = await kubectl(["-n", ns, "logs", "--timestamps", target]);
  if (r.code !== 0) return [];
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [ts = "", ...rest] = l.split(" ");
      return { at: Date.parse(ts.replace(/(\.\d{3})\d*Z$/, "$1Z")), text: rest.join(" ") };
    });
}

let image = "";

// The CRDs (the node project's setup installs none; chart.test.ts installs them with Helm) and
// the git image, before the suite's operator starts.
beforeAll(async () => {
  const kc = ["--kubeconfig", inject("kubeconfig")];
  await run("kubectl", [...kc, "apply", "--server-side", "--force-conflicts", "-f", join(repo, "crds")]);
  await run("kubectl", [
    ...kc,
    "wait",
    "--for=condition=Established",
    "--timeout=60s",
    "crd/githubapptokens.ghat.dev",
    "crd/githubapps.ghat.dev",
    "crd/clustergithubapps.ghat.dev",
  ]);
  image = await loadGitImage(inject("containerdAddress"));
}, 300_000);

describe("consumers on the node read what ghat keeps fresh", () => {
  const work = mkdtempSync(join(tmpdir(), "ghat-consumer-"));
  const keys = generateAppKeyPair();
  let sim: Simulator;
  let ca = "";
  let ns = "";

  const fx = useOperator({
    github: async () => {
      const ip = inject("nodeIp");
      const sh = (cmd: string, cwd = work) => execFileSync("sh", ["-c", cmd], { cwd, stdio: "ignore" });
      sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=git-test-ca",
      );
      sh(`openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=${ip}`);
      writeFileSync(join(work, "ext"), `subjectAltName=IP:${ip}\n`);
      sh(
        "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 1 -extfile ext",
      );
      ca = readFileSync(join(work, "ca.crt"), "utf8");
      const src = join(work, "src");
      mkdirSync(src);
      sh(
        "git init -q -b main . && git -c user.email=t@e -c user.name=t commit -q --allow-empty -m hello",
        src,
      );
      mkdirSync(join(work, "repos/acme"), { recursive: true });
      sh(`git clone -q --bare ${src} repos/acme/app.git`);
      // On the node's address: Pods reach it there (127.0.0.1 would be their own).
      sim = await startSimulator({
        host: ip,
        gitRoot: join(work, "repos"),
        tls: {
          cert: readFileSync(join(work, "srv.crt"), "utf8"),
          key: readFileSync(join(work, "srv.key"), "utf8"),
        },
        tokenLifetimeSeconds: 60,
        seed: {
          apps: [
            {
              id: 4242,
              clientId: "Iv23liNode",
              slug: "node",
              owner: "acme",
              publicKeys: [keys.publicKeyPem],
            },
          ],
          installations: [
            {
              id: 9001,
              appId: 4242,
              account: { login: "acme", type: "Organization" },
              permissions: { contents: "read", metadata: "read" },
            },
          ],
          repositories: [{ id: 501, owner: "acme", name: "app", private: true }],
        },
      });
      return { sim, keys };
    },
    operator: ["--revoke-superseded-after", revokeAfter, "--workloads", "true", "--restart-gap", "1s"],
  });

  beforeAll(async () => {
    ns = await fx.withApp("consumer", { caBundle: ca });
    await ok(["-n", ns, "create", "configmap", "sim-ca", `--from-literal=ca.crt=${ca}`]);
  });

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const repoPath = () => `${new URL(sim.url).host}/acme/app.git`;
  const hostFetch = async (token: string) =>
    run("git", ["ls-remote", `https://x-access-token:${token}@${repoPath()}`], {
      env: {
        PATH: process.env.PATH ?? "",
        HOME: work,
        GIT_SSL_CAINFO: join(work, "ca.crt"),
        GIT_TERMINAL_PROMPT: "0",
        GIT_CONFIG_NOSYSTEM: "1",
      },
    }).then(
      () => true,
      () => false,
    );

  /** A container that runs as nobody special, read-only, with the simulator's CA trusted. */
  const container = (script: string, extra: Record<string, unknown> = {}) => ({
    name: "git",
    image,
    imagePullPolicy: "Never",
    command: ["sh", "-c", script],
    securityContext: {
      runAsUser: 65532,
      runAsGroup: 65532,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    },
    ...extra,
    env: [
      { name: "REPO", value: repoPath() },
      { name: "GIT_SSL_CAINFO", value: "/ca/ca.crt" },
      ...((extra.env as unknown[]) ?? []),
    ],
    volumeMounts: [
      { name: "ca", mountPath: "/ca", readOnly: true },
      { name: "tmp", mountPath: "/tmp" },
      ...((extra.volumeMounts as unknown[]) ?? []),
    ],
  });
  const baseVolumes = [
    { name: "ca", configMap: { name: "sim-ca" } },
    { name: "tmp", emptyDir: {} },
  ];

  it("a Pod mounting the token and basicAuth Secrets never fails a fetch across rotations; the old token is then refused", async () => {
    const token = await watchSecret(ns, "m-token", "token");
    try {
      await ok(
        ["-n", ns, "apply", "-f", "-"],
        tokenYaml("m", {
          permissions: { contents: "read" },
          refreshPolicy,
          secrets: [{ name: "m-token" }, { name: "m-basic", format: "basicAuth" }],
        }),
      );
      await expect
        .poll(() => token.seen.length, { timeout: 60_000, interval: 250 })
        .toBeGreaterThanOrEqual(1);
      await ok(
        ["-n", ns, "apply", "-f", "-"],
        JSON.stringify({
          apiVersion: "v1",
          kind: "Pod",
          metadata: { name: "mounted", namespace: ns },
          spec: {
            terminationGracePeriodSeconds: 0,
            containers: [
              container(
                fetchLoop(
                  fetchStep("token", "$(cat /token/token)", "x-access-token") +
                    fetchStep("basic", "$(cat /basic/password)", "$(cat /basic/username)"),
                ),
                {
                  volumeMounts: [
                    { name: "token", mountPath: "/token", readOnly: true },
                    { name: "basic", mountPath: "/basic", readOnly: true },
                  ],
                },
              ),
            ],
            volumes: [
              ...baseVolumes,
              { name: "token", secret: { secretName: "m-token" } },
              { name: "basic", secret: { secretName: "m-basic" } },
            ],
          },
        }),
      );
      await ok(["-n", ns, "wait", "--for=condition=Ready", "pod/mounted", "--timeout=120s"]);
      // Two rotations after the token the Pod started with, each fetched with by the Pod.
      const fetchedWith = async (label: string, h: string) =>
        (await logLines(ns, "mounted")).find((l) => l.text === `${label} ok ${h}`);
      await expect
        .poll(
          async () => {
            const v = token.seen[2];
            return Boolean(v && (await fetchedWith("token", v.hash)) && (await fetchedWith("basic", v.hash)));
          },
          { timeout: 180_000, interval: 1000 },
        )
        .toBe(true);
      const lines = await logLines(ns, "mounted");
      const fails = lines.filter((l) => l.text.includes(" fail "));
      expect(fails.map((l) => l.text)).toEqual([]);
      expect(lines.filter((l) => l.text.startsWith("token ok")).length).toBeGreaterThan(10);
      const delays: string[] = [];
      for (const v of token.seen.slice(1, 3)) {
        const first = (label: string) =>
          lines.find((l) => l.text === `${label} ok ${v.hash}`)?.at ?? Number.NaN;
        delays.push(`token ${first("token") - v.at} ms, basicAuth ${first("basic") - v.at} ms`);
      }
      report(
        `consumer: mounted Secret, rotation (Secret write) -> the Pod's first fetch with the new token: ${delays.join("; ")}`,
      );
      report(
        `consumer: mounted Pod fetched ${lines.filter((l) => l.text.startsWith("token ")).length} times with the token Secret and ${lines.filter((l) => l.text.startsWith("basic ")).length} times with the basicAuth Secret over ${token.seen.length - 1} rotations, 0 failures`,
      );

      // The first token was superseded, then revoked after --revoke-superseded-after: GitHub refuses it.
      const old = token.seen[0]?.token ?? "";
      await expect
        .poll(() => sim.checkToken(old).reason, { timeout: 90_000, interval: 500 })
        .toMatch(/revoked/);
      expect(await hostFetch(old)).toBe(false);
      expect(await hostFetch(token.seen.at(-1)?.token ?? "")).toBe(true);
      // And the Pod, on the current token, still fetches.
      const after = Date.now();
      await expect
        .poll(
          async () =>
            (await logLines(ns, "mounted")).some((l) => l.at > after && l.text.startsWith("token ok")),
          {
            timeout: 30_000,
            interval: 500,
          },
        )
        .toBe(true);
      expect((await logLines(ns, "mounted")).filter((l) => l.text.includes(" fail "))).toEqual([]);
    } finally {
      await token.stop();
      await kubectl(["-n", ns, "delete", "pod", "mounted", "--wait=false"]);
    }
  });

  it("a Deployment reading the token from an environment variable is restarted by ghat onto the new token", async () => {
    const token = await watchSecret(ns, "e-token", "token");
    try {
      await ok(
        ["-n", ns, "apply", "-f", "-"],
        tokenYaml("e", {
          permissions: { contents: "read" },
          refreshPolicy,
          sharing: "None",
          secrets: [{ name: "e-token" }],
          rollout: { workloads: [{ kind: "Deployment", name: "envapp" }], stagger: "1s", minInterval: "1s" },
        }),
      );
      await expect
        .poll(() => token.seen.length, { timeout: 60_000, interval: 250 })
        .toBeGreaterThanOrEqual(1);
      await ok(
        ["-n", ns, "apply", "-f", "-"],
        stringify({
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: "envapp", namespace: ns },
          spec: {
            replicas: 1,
            selector: { matchLabels: { app: "envapp" } },
            template: {
              metadata: { labels: { app: "envapp" } },
              spec: {
                terminationGracePeriodSeconds: 0,
                containers: [
                  container(fetchLoop(fetchStep("env", '"$GH_TOKEN"', "x-access-token")), {
                    env: [
                      { name: "GH_TOKEN", valueFrom: { secretKeyRef: { name: "e-token", key: "token" } } },
                    ],
                  }),
                ],
                volumes: baseVolumes,
              },
            },
          },
        }),
      );
      const podsNow = async () =>
        (await ok(["-n", ns, "get", "pods", "-l", "app=envapp", "-o", "jsonpath={.items[*].metadata.name}"]))
          .split(" ")
          .filter(Boolean);
      await ok(["-n", ns, "rollout", "status", "deployment/envapp", "--timeout=120s"]);
      const firstPods = await podsNow();
      const generation = Number(
        await ok(["-n", ns, "get", "deployment", "envapp", "-o", "jsonpath={.metadata.generation}"]),
      );

      // A Pod that fetched with token version i (its first ok line for that hash).
      const fetchedWith = async (v: Version) => {
        for (const p of await podsNow()) {
          const hit = (await logLines(ns, p)).find((l) => l.text === `env ok ${v.hash}`);
          if (hit) return { pod: p, at: hit.at };
        }
        return undefined;
      };
      await expect
        .poll(async () => Boolean(token.seen[0] && (await fetchedWith(token.seen[0]))), {
          timeout: 60_000,
          interval: 500,
        })
        .toBe(true);
      // After a rotation: a new Pod of a new ReplicaSet fetches with a new token. Under load a
      // Pod can start slower than tokens rotate here (every ~20 s): the rollout for one version
      // may be overtaken by the next one's, so any version after the first counts.
      let hit: { pod: string; at: number } | undefined;
      let v1: Version | undefined;
      await expect
        .poll(
          async () => {
            for (const v of token.seen.slice(1)) {
              hit = await fetchedWith(v);
              v1 = v;
              if (hit) return true;
            }
            return false;
          },
          { timeout: 150_000, interval: 1000 },
        )
        .toBe(true);
      expect(firstPods).not.toContain(hit?.pod);
      expect(
        Number(await ok(["-n", ns, "get", "deployment", "envapp", "-o", "jsonpath={.metadata.generation}"])),
      ).toBeGreaterThan(generation);
      const restartedFor = await ok([
        "-n",
        ns,
        "get",
        "deployment",
        "envapp",
        "-o",
        "jsonpath={.spec.template.metadata.annotations.restarted-for\\.ghat\\.dev/e}",
      ]);
      expect(token.seen.slice(1).map((v) => v.hash)).toContain(restartedFor);
      report(
        `consumer: env Deployment, rotation (Secret write) -> a restarted Pod's first fetch with the new token: ${(hit?.at ?? Number.NaN) - (v1?.at ?? Number.NaN)} ms`,
      );
    } finally {
      await token.stop();
      await kubectl(["-n", ns, "delete", "deployment", "envapp", "--wait=false"]);
    }
  });

  fx.itLeaksNothing();
});

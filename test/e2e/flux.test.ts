import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { CoreV1Api, type KubernetesObject, ListWatch, type V1Secret, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { generateAppKeyPair } from "../../src/sim/keys.ts";
import { type Simulator, startSimulator } from "../../src/sim/simulator.ts";
import { kubeConfig, kubeconfigPath, kubectl } from "../support/cluster.ts";
import { useOperator, writeLocal } from "./fixture.ts";
import { tokenYaml } from "./operator.ts";

const root = new URL("../../", import.meta.url).pathname;
const group = "source.toolkit.fluxcd.io";

/** A GitRepository as source-controller writes it (the fields this suite reads). */
interface GitRepository extends KubernetesObject {
  metadata?: KubernetesObject["metadata"] & { generation?: number };
  status?: {
    observedGeneration?: number;
    conditions?: { type: string; status: string; reason: string; message: string }[];
    artifact?: { revision?: string; digest?: string; lastUpdateTime?: string };
  };
}

/** A free loopback port (the listener is closed before the caller binds it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Flux's real source-controller (hack/flux/build.sh, docs/consumers.md) as the consumer of the
 * basicAuth Secret: it fetches a private repository from the simulator's git (HTTPS, private
 * CA read from the Secret's ca.crt) while ghat rotates the token every ~15 s and revokes the
 * superseded one. Each new commit pushed after a rotation and the old token's revocation must
 * reach the artifact, fetched with the new token, and the GitRepository never stops being Ready;
 * a control GitRepository on a frozen copy of the Secret fails once its token is revoked.
 */
describe("Flux source-controller fetches with the Secret ghat keeps fresh", () => {
  const work = mkdtempSync(join(tmpdir(), "ghat-flux-"));
  const src = join(work, "src");
  const bare = join(work, "repos/acme/app.git");
  const keys = generateAppKeyPair();
  let ca = "";
  let sim: Simulator;
  let ns = "";
  let flux: ChildProcess | undefined;
  let fluxExited: Promise<unknown> = Promise.resolve();
  const fluxLines: string[] = [];
  /** Every git request's token check at the simulator: when, which token, and whether it let it in. */
  const gitChecks: { at: number; token: string; live: boolean; reason?: string | undefined }[] = [];
  const sh = (cmd: string, cwd = work) =>
    execFileSync("sh", ["-c", cmd], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();

  const fx = useOperator({
    github: async () => {
      sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=flux-test-ca",
      );
      sh("openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1");
      writeFileSync(join(work, "ext"), "subjectAltName=IP:127.0.0.1\n");
      sh(
        "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 1 -extfile ext",
      );
      ca = readFileSync(join(work, "ca.crt"), "utf8");
      mkdirSync(src);
      sh(
        "git init -q -b main . && git -c user.email=t@e -c user.name=t commit -q --allow-empty -m hello",
        src,
      );
      mkdirSync(dirname(bare), { recursive: true });
      sh(`git clone -q --bare ${src} ${bare}`);
      sim = await startSimulator({
        gitRoot: join(work, "repos"),
        tls: {
          cert: readFileSync(join(work, "srv.crt"), "utf8"),
          key: readFileSync(join(work, "srv.key"), "utf8"),
        },
        // Tokens live 30 s; the GitHubAppToken refreshes 15 s before expiry: a rotation every ~15 s.
        tokenLifetimeSeconds: 30,
        seed: {
          apps: [
            {
              id: 4242,
              clientId: "Iv23liFlux",
              slug: "flux",
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
      // The git side of the simulator checks each request's token through state.checkToken
      // (with the repository): record those checks as the consumer's request log.
      const check = sim.state.checkToken.bind(sim.state);
      sim.state.checkToken = (token, repository, now) => {
        const result = check(token, repository, now);
        if (repository !== undefined)
          gitChecks.push({ at: Date.now(), token, live: result.live, reason: result.reason });
        return result;
      };
      return { sim, keys };
    },
    // Long enough that a fetch which read the Secret just before a rotation is never refused.
    operator: ["--revoke-superseded-after", "5s"],
  });
  const { kube } = fx;

  /** A commit that changes the tree (so the artifact's content changes too), pushed to the bare repository. */
  const commit = (message: string): string => {
    writeFileSync(join(src, "README"), `${message}\n`);
    sh(`git add README && git -c user.email=t@e -c user.name=t commit -q -m ${message}`, src);
    sh(`git push -q ${bare} main`, src);
    return sh("git rev-parse HEAD", src);
  };
  const repoUrl = () => `${sim.url}/acme/app.git`;
  const getRepo = async (name = "app"): Promise<GitRepository | undefined> => {
    try {
      return (await kube.custom.getNamespacedCustomObject({
        group,
        version: "v1",
        namespace: ns,
        plural: "gitrepositories",
        name,
      })) as GitRepository;
    } catch {
      return undefined;
    }
  };
  /** A GitRepository of acme/app every 5 s with `secret`; resolves to kubectl's exit code. */
  const applyRepo = async (name: string, secret: string) => {
    const repo = {
      apiVersion: `${group}/v1`,
      kind: "GitRepository",
      metadata: { name },
      spec: {
        interval: "5s",
        timeout: "20s",
        url: repoUrl(),
        ref: { branch: "main" },
        secretRef: { name: secret },
      },
    };
    return (await kubectl(["-n", ns, "apply", "-f", "-"], { input: JSON.stringify(repo) })).code;
  };
  const readyOf = (r: GitRepository | undefined) => r?.status?.conditions?.find((c) => c.type === "Ready");
  const password = async () => (await kube.secretValue(ns, "f-flux", "password")) ?? "";

  beforeAll(async () => {
    const bin =
      execFileSync("bash", [`${root}hack/flux/build.sh`], { encoding: "utf8" })
        .trim()
        .split("\n")
        .at(-1) ?? "";
    const crds = join(dirname(bin), "crds");
    const applied = await kubectl(["apply", "--server-side", "--force-conflicts", "-f", crds]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(
      (
        await kubectl([
          "wait",
          "--for=condition=Established",
          `crd/gitrepositories.${group}`,
          "--timeout=60s",
        ])
      ).code,
    ).toBe(0);
    ns = await fx.withApp("flux", { caBundle: ca });
    const [storage, metrics, health] = [await freePort(), await freePort(), await freePort()];
    const storagePath = join(work, "storage");
    mkdirSync(storagePath);
    const proc = spawn(
      bin,
      [
        "--enable-leader-election=false",
        // Only this suite's namespace (RUNTIME_NAMESPACE): nothing else on the shared control plane.
        "--watch-all-namespaces=false",
        `--storage-path=${storagePath}`,
        `--storage-addr=127.0.0.1:${storage}`,
        `--storage-adv-addr=127.0.0.1:${storage}`,
        `--metrics-addr=127.0.0.1:${metrics}`,
        `--health-addr=127.0.0.1:${health}`,
        "--log-level=debug",
      ],
      {
        env: {
          PATH: process.env.PATH ?? "",
          HOME: work,
          KUBECONFIG: kubeconfigPath(),
          RUNTIME_NAMESPACE: ns,
        },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    flux = proc;
    fluxExited = new Promise((resolve) => proc.once("exit", resolve));
    let buffer = "";
    const collect = (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split("\n");
      buffer = parts.pop() ?? "";
      fluxLines.push(...parts);
    };
    proc.stdout?.on("data", collect);
    proc.stderr?.on("data", collect);
    // vi.waitFor (not expect.poll): this runs in a hook.
    await vi.waitFor(
      async () => {
        if (proc.exitCode !== null)
          throw new Error(`source-controller exited ${proc.exitCode}: ${fluxLines.slice(-5).join("\n")}`);
        const res = await fetch(`http://127.0.0.1:${health}/readyz`).catch(() => undefined);
        if (res?.status !== 200)
          throw new Error(`source-controller not ready: ${fluxLines.slice(-5).join("\n")}`);
      },
      { timeout: 60_000, interval: 250 },
    );
  });

  afterAll(async () => {
    // Removed while source-controller still runs, so that its finalizer goes with it.
    if (ns) await kubectl(["-n", ns, "delete", "gitrepositories", "--all", "--timeout=30s"]);
    if (flux && flux.exitCode === null) {
      flux.kill("SIGTERM");
      const timer = setTimeout(() => flux?.kill("SIGKILL"), 10_000);
      await fluxExited;
      clearTimeout(timer);
    }
    writeLocal("flux-source-controller.log", `${fluxLines.join("\n")}\n`);
    rmSync(work, { recursive: true, force: true });
  });

  it("makes the GitRepository Ready with an artifact of the private repository's commit, trusting the Secret's ca.crt", async () => {
    const first = sh("git rev-parse HEAD", src);
    const spec = {
      installation: { owner: "acme" },
      permissions: { contents: "read" },
      repositories: ["app"],
      secrets: [{ name: "f-flux", format: "basicAuth" }],
      refreshPolicy: { refreshBefore: "15s", minRemainingLifetime: "5s" },
    };
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenYaml("f", spec) })).code).toBe(0);
    expect((await kubectl(["-n", ns, "wait", "--for=condition=Ready", "ghat/f", "--timeout=60s"])).code).toBe(
      0,
    );
    expect(await applyRepo("app", "f-flux")).toBe(0);
    await expect
      .poll(
        async () => {
          const r = await getRepo();
          const ready = readyOf(r);
          return ready?.status === "True"
            ? r?.status?.artifact?.revision
            : `${ready?.reason}: ${ready?.message}`;
        },
        { timeout: 60_000, interval: 250 },
      )
      .toBe(`main@sha1:${first}`);
    expect(gitChecks.filter((c) => c.live).length).toBeGreaterThan(0);
    // The same credentials without the Secret's ca.crt: source-controller does not trust the
    // private CA (it reads the CA from that same Secret only), so ca.crt is what made it work.
    const { "ca.crt": _, ...credentials } = (await kube.secret(ns, "f-flux"))?.data ?? {};
    await kube.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "no-ca" }, type: "kubernetes.io/basic-auth", data: credentials },
    });
    expect(await applyRepo("no-ca", "no-ca")).toBe(0);
    await expect
      .poll(
        async () => {
          const ready = readyOf(await getRepo("no-ca"));
          return `${ready?.status} ${ready?.message}`;
        },
        { timeout: 30_000, interval: 250 },
      )
      .toMatch(/^False .*x509: certificate signed by unknown authority/);
    expect((await kubectl(["-n", ns, "delete", "gitrepository", "no-ca", "--timeout=30s"])).code).toBe(0);
  });

  it("picks up new commits with each rotated token, stays Ready through rotations and revocations", async () => {
    const kc = kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    // The control: a frozen copy of the Secret as it is now, which ghat does not refresh. Once
    // its token is revoked, Flux must fail with it: a revoked token does not open the repository.
    const copy = await kube.secret(ns, "f-flux");
    const staleToken = Buffer.from(copy?.data?.password ?? "", "base64").toString();
    await core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "stale-auth" }, type: "kubernetes.io/basic-auth", data: copy?.data ?? {} },
    });
    expect(await applyRepo("stale", "stale-auth")).toBe(0);
    await expect
      .poll(async () => readyOf(await getRepo("stale"))?.status, { timeout: 30_000, interval: 250 })
      .toBe("True");
    /** Every version of the Secret's password, when the watch saw it. */
    const versions: { at: number; password: string }[] = [];
    const secretWatch = new ListWatch<V1Secret>(
      `/api/v1/namespaces/${ns}/secrets`,
      new Watch(kc),
      () => core.listNamespacedSecret({ namespace: ns, fieldSelector: "metadata.name=f-flux" }),
      false,
      undefined,
      "metadata.name=f-flux",
    );
    const recordSecret = (s: V1Secret) => {
      const value = Buffer.from(s.data?.password ?? "", "base64").toString();
      if (value && versions.at(-1)?.password !== value) versions.push({ at: Date.now(), password: value });
    };
    secretWatch.on("add", recordSecret);
    secretWatch.on("update", recordSecret);
    /** Every Ready condition the GitRepository had, as written. */
    const samples: { at: number; status: string; reason: string; message: string; revision?: string }[] = [];
    const repoWatch = new ListWatch<GitRepository>(
      `/apis/${group}/v1/namespaces/${ns}/gitrepositories`,
      new Watch(kc),
      async () =>
        (await kube.custom.listNamespacedCustomObject({
          group,
          version: "v1",
          namespace: ns,
          plural: "gitrepositories",
        })) as { items: GitRepository[] },
      false,
    );
    const recordRepo = (r: GitRepository) => {
      const ready = readyOf(r);
      if (ready && r.metadata?.name === "app")
        samples.push({
          at: Date.now(),
          status: ready.status,
          reason: ready.reason,
          message: ready.message,
          ...(r.status?.artifact?.revision ? { revision: r.status.artifact.revision } : {}),
        });
    };
    repoWatch.on("add", recordRepo);
    repoWatch.on("update", recordRepo);
    await secretWatch.start();
    await repoWatch.start();
    const rounds: {
      rotatedAt: number;
      pushedAt: number;
      pickedUpAt: number;
      firstNewTokenFetchAt: number;
    }[] = [];
    try {
      for (let round = 1; round <= 2; round++) {
        const old = await password();
        await expect.poll(password, { timeout: 40_000, interval: 100 }).not.toBe(old);
        const fresh = await password();
        await expect.poll(() => sim.checkToken(old).live, { timeout: 20_000, interval: 100 }).toBe(false);
        expect(sim.checkToken(old).reason).toBe("revoked");
        const pushedAt = Date.now();
        const digest = (await getRepo())?.status?.artifact?.digest;
        const sha = commit(`round-${round}`);
        await expect
          .poll(async () => (await getRepo())?.status?.artifact?.revision, { timeout: 30_000, interval: 100 })
          .toBe(`main@sha1:${sha}`);
        const pickedUpAt = Date.now();
        expect((await getRepo())?.status?.artifact?.digest).not.toBe(digest);
        const rotatedAt = versions.find((v) => v.password === fresh)?.at ?? Number.NaN;
        const firstNewTokenFetchAt = gitChecks.find((c) => c.token === fresh && c.live)?.at ?? Number.NaN;
        // The new commit came in through git requests after the push, each let in with a rotated
        // token: the old one was revoked before the push.
        // (The control's requests with its revoked token are the refused ones.)
        const fetches = gitChecks.filter((c) => c.at >= pushedAt && c.at <= pickedUpAt && c.live);
        expect(fetches.length).toBeGreaterThan(0);
        expect(fetches.some((c) => c.token === old)).toBe(false);
        rounds.push({ rotatedAt, pushedAt, pickedUpAt, firstNewTokenFetchAt });
      }
    } finally {
      await secretWatch.stop();
      await repoWatch.stop();
    }
    // Every git request Flux made for "app" was let in: the only refused ones carried the
    // control's frozen token, and the control did fail on it once it was revoked.
    expect(gitChecks.filter((c) => !c.live && c.token !== staleToken).map((c) => c.reason)).toEqual([]);
    expect(gitChecks.filter((c) => !c.live && c.token === staleToken).length).toBeGreaterThan(0);
    await expect
      .poll(
        async () => {
          const ready = readyOf(await getRepo("stale"));
          return `${ready?.status} ${ready?.message}`;
        },
        { timeout: 15_000, interval: 250 },
      )
      .toMatch(/^False .*(authentication|401|unauthorized)/i);
    // The GitRepository was never not-Ready (Unknown only while it builds the new commit's artifact).
    expect(samples.filter((s) => s.status === "False")).toEqual([]);
    expect(samples.filter((s) => s.status === "Unknown" && s.reason !== "Progressing")).toEqual([]);
    // Every rotation seen, and how long each new password waited for its first fetch.
    const delays = versions
      .slice(1)
      .map((v) => (gitChecks.find((c) => c.token === v.password && c.live)?.at ?? Number.NaN) - v.at)
      .filter((d) => !Number.isNaN(d));
    expect(versions.length).toBeGreaterThanOrEqual(3);
    expect(delays.length).toBeGreaterThanOrEqual(2);
    // Within one 5 s interval (plus the reconcile's own time).
    expect(Math.max(...delays)).toBeLessThan(10_000);
    const figures = {
      rotations: versions.length - 1,
      rotationToFirstFetchMs: delays,
      rounds: rounds.map((r) => ({
        rotationToFirstNewTokenFetchMs: r.firstNewTokenFetchAt - r.rotatedAt,
        pushToArtifactMs: r.pickedUpAt - r.pushedAt,
      })),
      readySamples: Object.fromEntries(
        [...new Set(samples.map((x) => `${x.status}/${x.reason}`))].map((k) => [
          k,
          samples.filter((x) => `${x.status}/${x.reason}` === k).length,
        ]),
      ),
      gitRequests: gitChecks.length,
    };
    writeLocal("flux-figures.json", `${JSON.stringify(figures, null, 2)}\n`);
  }, 150_000);

  fx.itLeaksNothing({ minLines: false });
});

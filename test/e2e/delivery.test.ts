import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { kubectl } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { tokenYaml } from "./operator.ts";

const hash = (t: string) => createHash("sha256").update(t).digest("hex").slice(0, 16);

/** A Deployment reading `secret` through an env var (`env`) or a volume. */
function deploymentYaml(name: string, secret: string, via: "env" | "volume"): string {
  const container = {
    name: "app",
    image: "registry.k8s.io/pause:3.10",
    ...(via === "env"
      ? { env: [{ name: "GH_TOKEN", valueFrom: { secretKeyRef: { name: secret, key: "token" } } }] }
      : { volumeMounts: [{ name: "token", mountPath: "/var/run/github", readOnly: true }] }),
  };
  return stringify({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [container],
          ...(via === "volume" ? { volumes: [{ name: "token", secret: { secretName: secret } }] } : {}),
        },
      },
    },
  });
}

/**
 * Delivery to workloads and sharing, on the real API server (no kubelet runs here: a
 * restart is the pod-template change the Deployment controller would roll out).
 */
describe("delivery to workloads, and one mint per scope", () => {
  const fx = useOperator({
    tokenLifetimeSeconds: 12,
    operator: ["--revoke-superseded-after", "3s", "--restart-gap", "1s"],
  });
  const { kube } = fx;
  const bound = { timeout: 40_000, interval: 250 };

  async function apply(ns: string, yaml: string) {
    const r = await kubectl(["-n", ns, "apply", "-f", "-"], { input: yaml });
    expect(r.code, r.stderr).toBe(0);
  }
  const jsonpath = async (ns: string, what: string, path: string) =>
    (await kubectl(["-n", ns, "get", what, "-o", `jsonpath=${path}`])).stdout;
  const delivered = async (ns: string, name: string) => {
    const t = await kube.getToken(ns, name);
    return t?.status?.conditions?.find((c) => c.type === "Delivered");
  };
  const secretToken = async (ns: string, secret: string) =>
    Buffer.from(await jsonpath(ns, `secret/${secret}`, "{.data.token}"), "base64").toString();

  it("says in the status when a workload reads the Secret through environment variables", async () => {
    const ns = await fx.withApp("env");
    await apply(ns, deploymentYaml("reader", "t-token", "env"));
    await apply(ns, deploymentYaml("mounter", "t-token", "volume"));
    await apply(ns, tokenYaml("t", { refreshPolicy: { refreshBefore: "8s", minRemainingLifetime: "4s" } }));
    await expect.poll(async () => (await delivered(ns, "t"))?.reason, bound).toBe("EnvironmentVariables");
    const c = await delivered(ns, "t");
    expect(c?.status).toBe("False");
    expect(c?.message).toContain("Deployment/reader reads t-token through environment variables");
    expect(c?.message).not.toContain("mounter");
  });

  it("restarts listed workloads only after the token changed, one after the other", async () => {
    const ns = await fx.withApp("rollout");
    await apply(ns, deploymentYaml("web", "r-token", "env"));
    await apply(ns, deploymentYaml("worker", "r-token", "env"));
    const restartedFor = (name: string) =>
      jsonpath(
        ns,
        `deployment/${name}`,
        "{.spec.template.metadata.annotations.restarted-for\\.ghat\\.dev/r}",
      );
    await apply(
      ns,
      tokenYaml("r", {
        refreshPolicy: { refreshBefore: "8s", minRemainingLifetime: "4s" },
        rollout: {
          workloads: [
            { kind: "Deployment", name: "web" },
            { kind: "Deployment", name: "worker" },
          ],
          stagger: "2s",
          minInterval: "1s",
        },
      }),
    );
    await expect.poll(async () => (await delivered(ns, "r"))?.reason, bound).toBe("Delivered");
    const first = await secretToken(ns, "r-token");
    // First issue: nothing restarted (pods waiting for a missing Secret start by themselves).
    expect(await restartedFor("web")).toBe("");
    // After the rotation both are restarted for the new token, the second ≥ 2 s after the first.
    await expect.poll(() => secretToken(ns, "r-token"), bound).not.toBe(first);
    await expect.poll(() => restartedFor("worker"), bound).not.toBe("");
    const at = async (name: string) =>
      Date.parse(
        await jsonpath(
          ns,
          `deployment/${name}`,
          "{.spec.template.metadata.annotations.ghat\\.dev/restarted-at}",
        ),
      );
    expect((await at("worker")) - (await at("web"))).toBeGreaterThanOrEqual(2_000);
    const current = await secretToken(ns, "r-token");
    const web = await restartedFor("web");
    expect([hash(current), hash(first)]).not.toContain("");
    // Restarted for a token ghat wrote after the first one (a later rotation may already have replaced it).
    expect(web).not.toBe(hash(first));
    // The generation moves once per restart, never while the token stays the same.
    const gen = await jsonpath(ns, "deployment/web", "{.metadata.generation}");
    expect(Number(gen)).toBeGreaterThanOrEqual(2);
    // No env warning for listed workloads: they are restarted.
    expect((await delivered(ns, "r"))?.message ?? "").not.toContain("environment variables");
  });

  it("gives tokens of one scope one mint per rotation, and keeps the shared token until its last holder goes", async () => {
    const ns = await fx.withApp("share");
    // A scope no other test here uses, so the simulator's tokens can be attributed.
    const spec = {
      permissions: { issues: "read" },
      refreshPolicy: { refreshBefore: "8s", minRemainingLifetime: "4s" },
    };
    const mintedForScope = (since: number) =>
      [...fx.github.sim.state.tokens.values()].filter(
        (t) => t.permissions.issues === "read" && t.permissions.contents === undefined && t.issuedAt >= since,
      ).length;
    await apply(
      ns,
      [
        tokenYaml("a", spec),
        tokenYaml("b", spec),
        tokenYaml("c", spec),
        tokenYaml("own", { ...spec, sharing: "None" }),
      ].join("---\n"),
    );
    await expect
      .poll(
        async () =>
          (await kubectl(["-n", ns, "wait", "--for=condition=Ready", "ghat", "--all", "--timeout=1s"])).code,
        bound,
      )
      .toBe(0);
    const values = await Promise.all(["a", "b", "c", "own"].map((n) => secretToken(ns, `${n}-token`)));
    expect(new Set(values.slice(0, 3)).size).toBe(1);
    expect(values[3]).not.toBe(values[0]);
    // Watch several rotations: the group of three holds no more distinct tokens than one of them.
    const seen: Record<string, Set<string>> = { a: new Set(), b: new Set(), c: new Set(), own: new Set() };
    const since = Date.now();
    await expect
      .poll(
        async () => {
          for (const n of Object.keys(seen)) seen[n]?.add(await secretToken(ns, `${n}-token`));
          return seen.own?.size ?? 0;
        },
        { timeout: 40_000, interval: 100 },
      )
      .toBeGreaterThanOrEqual(4);
    const group = new Set([...(seen.a ?? []), ...(seen.b ?? []), ...(seen.c ?? [])]);
    expect(group.size).toBeLessThanOrEqual((seen.a?.size ?? 0) + 1);
    // GitHub saw about two mints per rotation (the group's and "own"), not four.
    expect(mintedForScope(since)).toBeLessThanOrEqual(group.size + (seen.own?.size ?? 0) + 2);
    await expect.poll(() => secretToken(ns, "b-token"), bound).toBe(await secretToken(ns, "a-token"));
    // Deleting one holder does not revoke what the others hold.
    const shared = await secretToken(ns, "b-token");
    expect((await kubectl(["-n", ns, "delete", "ghat", "a", "--wait=true"])).code).toBe(0);
    if ((await secretToken(ns, "b-token")) === shared)
      expect(fx.github.sim.checkToken(shared).live).toBe(true);
  });

  fx.itLeaksNothing({ name: "leaks nothing", minLines: false });
});

import { CoreV1Api, ListWatch, type V1Secret, Watch } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { kubeConfig, kubectl } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { tokenYaml } from "./operator.ts";

/**
 * Tokens live 12 s here; ghat refreshes 8 s before expiry and must never leave less than 4 s.
 * A watch records every version of the Secret as it is written.
 */
describe("refresh from GitHub's expires_at", () => {
  const fx = useOperator({ tokenLifetimeSeconds: 12, operator: ["--revoke-superseded-after", "3s"] });

  it("rotates several times with no moment where the Secret holds a dead token or less than the minimum lifetime", async () => {
    const ns = await fx.withApp("refresh", {}, fx.github.keys.privateKeyPkcs8Pem);
    const seen: {
      at: number;
      token: string;
      expiresAt: number;
      liveWhenSeen: boolean;
      previousLive: boolean | undefined;
    }[] = [];
    const kc = kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const watch = new ListWatch<V1Secret>(
      `/api/v1/namespaces/${ns}/secrets`,
      new Watch(kc),
      () => core.listNamespacedSecret({ namespace: ns, fieldSelector: "metadata.name=r-token" }),
      false,
      undefined,
      "metadata.name=r-token",
    );
    const record = (s: V1Secret) => {
      const token = Buffer.from(s.data?.token ?? "", "base64").toString();
      const last = seen.at(-1);
      if (!token || last?.token === token) return;
      seen.push({
        at: Date.now(),
        token,
        expiresAt: Date.parse(s.metadata?.annotations?.["ghat.dev/expires-at"] ?? ""),
        liveWhenSeen: fx.github.sim.checkToken(token).live,
        previousLive: last ? fx.github.sim.checkToken(last.token).live : undefined,
      });
    };
    watch.on("add", record);
    watch.on("update", record);
    await watch.start();
    try {
      const r = await kubectl(["-n", ns, "apply", "-f", "-"], {
        input: tokenYaml("r", { refreshPolicy: { refreshBefore: "8s", minRemainingLifetime: "4s" } }),
      });
      expect(r.code).toBe(0);
      await expect.poll(() => seen.length, { timeout: 40_000, interval: 250 }).toBeGreaterThanOrEqual(4);
    } finally {
      await watch.stop();
    }
    for (const [i, v] of seen.entries()) {
      expect(v.liveWhenSeen, `version ${i} live when written`).toBe(true);
      if (i === 0) continue;
      const prev = seen[i - 1];
      if (!prev) continue;
      // The previous token was still valid, with at least the minimum lifetime, when replaced.
      expect(v.previousLive, `version ${i - 1} still live when replaced`).toBe(true);
      expect(prev.expiresAt - v.at, `version ${i - 1} remaining when replaced`).toBeGreaterThanOrEqual(4_000);
      // And it was not replaced wastefully early: refresh lands 8 s (+ up to 10% jitter) before expiry.
      expect(prev.expiresAt - v.at).toBeLessThanOrEqual(9_000);
    }
    const mints = fx.github.sim.counts().byRoute["apps/create-installation-access-token"] ?? 0;
    expect(mints).toBe(seen.length);
    await expect
      .poll(() => fx.github.sim.checkToken(seen[0]?.token ?? "").reason, { timeout: 10_000 })
      .toMatch(/revoked|expired/);
  });
  fx.itLeaksNothing();
});

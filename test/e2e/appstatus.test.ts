import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { kubectl } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { appId, tokenYaml } from "./operator.ts";

interface AppObject {
  metadata?: { generation?: number };
  status?: {
    observedGeneration?: number;
    appId?: number;
    slug?: string;
    signer?: string;
    keyFingerprint?: string;
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
}

/**
 * GitHubApp status on the real API server: the operator checks the key and asks GitHub
 * (`GET /app`) whether it accepts the App's JWT, and says so in a Ready condition and columns.
 */
describe("GitHubApp status", () => {
  const fx = useOperator({ operator: ["--terminal-retry", "2s"] });
  const getAppCalls = () => fx.github.sim.counts().byRoute["apps/get-authenticated"] ?? 0;

  async function app(ns: string, name = "app"): Promise<AppObject> {
    const r = await kubectl(["-n", ns, "get", "githubapp", name, "-o", "json"]);
    return JSON.parse(r.stdout) as AppObject;
  }
  /** Replaces the App's key Secret the way a user would (kubectl apply). */
  async function setKey(ns: string, pem: string) {
    const secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "app-key" },
      stringData: { "private-key.pem": pem },
    };
    const r = await kubectl(["-n", ns, "apply", "-f", "-"], { input: JSON.stringify(secret) });
    expect(r.code, r.stderr).toBe(0);
  }
  const ready = async (ns: string) => (await app(ns)).status?.conditions?.find((c) => c.type === "Ready");

  it("a working App is Ready (Verified) with GitHub's id and slug, and shows them in its columns", async () => {
    const before = getAppCalls();
    const ns = await fx.withApp("appstatus");
    const wait = await kubectl(["-n", ns, "wait", "--for=condition=Ready", "githubapp/app", "--timeout=60s"]);
    expect(wait.stdout + wait.stderr).toContain("condition met");
    const a = await app(ns);
    expect(a.status).toMatchObject({
      observedGeneration: a.metadata?.generation,
      appId,
      signer: "privateKey",
      keyFingerprint: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    expect(a.status?.slug).toBeTruthy();
    expect(await ready(ns)).toMatchObject({ status: "True", reason: "Verified" });
    expect(getAppCalls() - before).toBe(1);
    const get = await kubectl(["-n", ns, "get", "githubapp"]);
    expect(get.stdout).toMatch(/NAME\s+READY\s+REASON\s+APP\s+SLUG\s+AGE/);
    expect(get.stdout).toMatch(new RegExp(`app\\s+True\\s+Verified\\s+${appId}\\s+${a.status?.slug}`));
  });

  it("kubectl get ghat-all lists the three kinds, and a token shows the Secrets it fills", async () => {
    const ns = await fx.withApp("appstatus-all");
    const apply = await kubectl(["-n", ns, "apply", "-f", "-"], {
      input: tokenYaml("ci", { secrets: [{ name: "ci-token" }, { name: "ci-flux", format: "basicAuth" }] }),
    });
    expect(apply.code).toBe(0);
    await kubectl(["-n", ns, "wait", "--for=condition=Ready", "ghat/ci", "--timeout=60s"]);
    const all = await kubectl(["-n", ns, "get", "ghat-all"]);
    expect(all.stdout).toContain("githubapp.ghat.dev/app");
    expect(all.stdout).toContain("githubapptoken.ghat.dev/ci");
    const tokens = await kubectl(["-n", ns, "get", "ghat"]);
    expect(tokens.stdout).toMatch(/NAME\s+READY\s+REASON\s+SECRETS\s+EXPIRES/);
    expect(tokens.stdout).toMatch(/ci\s+True\s+Issued\s+\["?ci-token"?,"?ci-flux"?\]/);
    // The short name still means GitHubAppToken.
    expect(tokens.stdout).not.toContain("githubapp.ghat.dev");
  });

  it("a broken key says why at once, and a fixed key is Verified again", async () => {
    const ns = await fx.withApp("appstatus-key");
    await kubectl(["-n", ns, "wait", "--for=condition=Ready", "githubapp/app", "--timeout=60s"]);
    await setKey(ns, "not a key");
    await expect.poll(async () => (await ready(ns))?.reason, { timeout: 30_000 }).toBe("InvalidPrivateKey");
    expect((await ready(ns))?.status).toBe("False");
    await setKey(ns, fx.github.keys.privateKeyPkcs1Pem);
    await expect.poll(async () => (await ready(ns))?.reason, { timeout: 30_000 }).toBe("Verified");
  });

  it("a key GitHub does not know is JWTRejected with GitHub's message, and is not retried in a loop", async () => {
    const stranger = generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey.export({ type: "pkcs1", format: "pem" })
      .toString();
    const ns = await fx.withApp("appstatus-jwt", {}, stranger);
    await expect.poll(async () => (await ready(ns))?.reason, { timeout: 30_000 }).toBe("JWTRejected");
    const c = await ready(ns);
    expect(c?.status).toBe("False");
    expect(c?.message).toMatch(/JWT/);
    // Not retried until the key changes or the interval (5 m) is up.
    const due = fx.op.operator.appStatus.dueAt("GitHubApp", ns, "app") ?? 0;
    expect(due - Date.now()).toBeGreaterThan(4 * 60_000);
  });

  it("a spec both with a key Secret and a signer is refused at admission with a readable message", async () => {
    const ns = await fx.withApp("appstatus-both");
    const r = await kubectl(["-n", ns, "apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "ghat.dev/v1alpha1",
        kind: "GitHubApp",
        metadata: { name: "both" },
        spec: {
          appId,
          privateKeySecretRef: { name: "app-key" },
          signer: { awsKms: { keyId: "alias/github-app" } },
        },
      }),
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("set exactly one key source");
    const none = await kubectl(["-n", ns, "apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "ghat.dev/v1alpha1",
        kind: "GitHubApp",
        metadata: { name: "none" },
        spec: { appId },
      }),
    });
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain("set exactly one key source");
    const twoSigners = await kubectl(["-n", ns, "apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "ghat.dev/v1alpha1",
        kind: "GitHubApp",
        metadata: { name: "two" },
        spec: {
          appId,
          signer: {
            awsKms: { keyId: "alias/github-app" },
            gcpKms: { keyVersion: "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1" },
          },
        },
      }),
    });
    expect(twoSigners.code).not.toBe(0);
    expect(twoSigners.stderr).toContain("set exactly one of vaultTransit, awsKms");
  });

  it("a tenant's GitHubApp naming a cloud KMS key is NotPermitted: it would borrow the operator's identity", async () => {
    const ns = await fx.withApp("appstatus-ambient");
    const r = await kubectl(["-n", ns, "apply", "-f", "-"], {
      input: JSON.stringify({
        apiVersion: "ghat.dev/v1alpha1",
        kind: "GitHubApp",
        metadata: { name: "borrowed" },
        spec: {
          appId,
          baseUrl: fx.github.sim.url,
          signer: { awsKms: { keyId: "alias/platform-github-app" } },
        },
      }),
    });
    expect(r.code).toBe(0);
    await expect
      .poll(async () => (await app(ns, "borrowed")).status?.conditions?.[0]?.reason, { timeout: 30_000 })
      .toBe("NotPermitted");
    expect((await app(ns, "borrowed")).status?.conditions?.[0]?.message).toContain("ClusterGitHubApp");
  });

  it("after a restart, a Verified App costs no GitHub call", async () => {
    const ns = await fx.withApp("appstatus-restart");
    await kubectl(["-n", ns, "wait", "--for=condition=Ready", "githubapp/app", "--timeout=60s"]);
    await fx.op.stop();
    const before = getAppCalls();
    const started = Date.now();
    const op = await fx.startOperator();
    await expect.poll(() => op.operator.appStatus.dueAt("GitHubApp", ns, "app")).toBeDefined();
    // Trusted until its interval: the next check is about 5 minutes away, not a second.
    expect((op.operator.appStatus.dueAt("GitHubApp", ns, "app") ?? 0) - started).toBeGreaterThan(4 * 60_000);
    await op.operator.controller.queue.idle();
    expect(getAppCalls() - before).toBe(0);
  });

  fx.itLeaksNothing();
});

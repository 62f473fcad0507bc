import { execFileSync } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../../../src/clock.ts";
import { GhatError } from "../../../src/core/errors.ts";
import { GitHubClient } from "../../../src/github/client.ts";
import { InstallationResolver } from "../../../src/github/installations.ts";
import type { Simulator } from "../../../src/sim/simulator.ts";
import { appId, keys, seed, startSim } from "../../sim/helpers.ts";

const key = createPrivateKey(keys.privateKeyPkcs1Pem);
const app = { appId, key };
let sim: Simulator;
beforeAll(async () => {
  sim = await startSim();
});
afterAll(() => sim.close());

const client = (options: Partial<ConstructorParameters<typeof GitHubClient>[0]> = {}) =>
  new GitHubClient({ baseUrl: sim.url, clock: systemClock, ...options });

async function caught(p: Promise<unknown>): Promise<GhatError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof GhatError) return err;
    throw err;
  }
  throw new Error("expected a GhatError");
}

describe("GitHubClient against the simulator", () => {
  it("mints with exactly the requested scope and reads expires_at from the server", async () => {
    const repositories = ["lib", "app"];
    const minted = await client().mintToken(app, 1, { permissions: { contents: "read" }, repositories });
    expect(repositories).toEqual(["lib", "app"]);
    expect(minted.permissions).toEqual({ contents: "read" });
    expect(minted.repositories?.map((r) => r.fullName).sort()).toEqual(["acme/app", "acme/lib"]);
    expect(minted.expiresAt % 1000).toBe(0);
    expect(minted.expiresAt - Date.now()).toBeGreaterThan(3595_000);
    expect(sim.checkToken(minted.token, "acme/app").live).toBe(true);
  });

  it("sends the API version, its user agent and, when asked, the token-format header", async () => {
    const seen: Record<string, string>[] = [];
    const spy: typeof fetch = async (url, init) => {
      seen.push(Object.fromEntries(Object.entries((init?.headers ?? {}) as Record<string, string>)));
      return fetch(url, init);
    };
    const minted = await client({
      fetch: spy as never,
      tokenFormat: "enabled",
      userAgent: "ghat/test",
    }).mintToken(app, 2);
    expect(seen[0]).toMatchObject({
      "x-github-api-version": "2022-11-28",
      "user-agent": "ghat/test",
      "x-github-stateless-s2s-token": "enabled",
    });
    expect(seen[0]?.authorization).toMatch(/^Bearer ey/);
    expect(minted.token.length).toBeGreaterThan(400);
  });

  it("revokes a token, and treats an already dead token as revoked", async () => {
    const c = client();
    const { token } = await c.mintToken(app, 2);
    await c.revokeToken(token);
    expect(sim.checkToken(token).live).toBe(false);
    await expect(c.revokeToken(token)).resolves.toBeUndefined();
  });

  it("re-signs once with GitHub's clock after a time-claim error, and remembers the offset", async () => {
    sim.setClockOffset(-5 * 60_000);
    try {
      sim.resetCounts();
      const c = client();
      await c.mintToken(app, 2);
      expect(sim.counts().byRouteStatus["apps/create-installation-access-token 401"]).toBe(1);
      expect(c.clockOffsetMs()).toBeLessThan(-4 * 60_000);
      await c.mintToken(app, 2);
      expect(sim.counts().byRouteStatus["apps/create-installation-access-token 401"]).toBe(1);
    } finally {
      sim.setClockOffset(0);
    }
  });

  it("finds installations by owner and repository, and lists them across pages", async () => {
    const c = client();
    expect((await c.findInstallationByOwner(app, "acme")).id).toBe(1);
    expect((await c.findInstallationByRepository(app, "octocat/hello")).id).toBe(2);
    expect((await c.listInstallations(app)).map((i) => i.id).sort()).toEqual(
      seed.installations.filter((i) => i.appId === appId).map((i) => i.id),
    );
  });

  it.each<[string, () => Promise<unknown>, string]>([
    ["an unknown installation", () => client().mintToken(app, 404), "InstallationNotFound"],
    ["an unknown App id", () => client().mintToken({ appId: 9999, key }, 1), "JWTRejected"],
    ["a suspended installation", () => client().mintToken(app, 4), "InstallationSuspended"],
    [
      "a permission not granted",
      () => client().mintToken(app, 1, { permissions: { administration: "read" } }),
      "PermissionsNotGranted",
    ],
    [
      "a repository not covered",
      () => client().mintToken(app, 1, { repositories: ["not-selected"] }),
      "RepositoriesNotGranted",
    ],
    [
      "a refused connection",
      () => new GitHubClient({ baseUrl: "http://127.0.0.1:1", clock: systemClock }).getApp(app),
      "GitHubUnavailable",
    ],
  ])("classifies %s", async (_case, run, code) => {
    const err = await caught(run());
    expect(err.code).toBe(code);
    expect(err.message).not.toMatch(/eyJ|ghs_|PRIVATE KEY/);
  });

  it("times out a slow GitHub as GitHubUnavailable", async () => {
    sim.faults.add({ route: "*", fault: { kind: "latency", ms: 500 }, count: 1 });
    const err = await caught(client({ timeoutMs: 100 }).getApp(app));
    expect(err).toMatchObject({ code: "GitHubUnavailable", retryable: true });
    expect(err.message).toContain("timed out");
  });
});

describe("InstallationResolver", () => {
  it("caches a lookup, shares concurrent ones, and looks up again after invalidate", async () => {
    sim.resetCounts();
    const resolver = new InstallationResolver({ clock: systemClock });
    const c = client();
    const [a, b] = await Promise.all([
      resolver.resolve(c, app, "app", { owner: "acme" }),
      resolver.resolve(c, app, "app", { owner: "ACME" }),
    ]);
    expect(a.id).toBe(1);
    expect(b.id).toBe(1);
    await resolver.resolve(c, app, "app", { owner: "acme" });
    expect(sim.counts().byRoute["apps/get-user-installation"]).toBe(1);
    resolver.invalidate("app", { owner: "acme" });
    await resolver.resolve(c, app, "app", { owner: "acme" });
    expect(sim.counts().byRoute["apps/get-user-installation"]).toBe(2);
  });
});

describe("Enterprise Server over HTTPS with a private CA", () => {
  let ghes: Simulator;
  let ca: string;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "ghat-ca-"));
    const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    run([
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "1",
      "-subj",
      "/CN=test-ca",
    ]);
    run([
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "srv.key",
      "-out",
      "srv.csr",
      "-subj",
      "/CN=127.0.0.1",
    ]);
    execFileSync("sh", ["-c", "printf 'subjectAltName=IP:127.0.0.1\\n' > ext"], { cwd: dir });
    run([
      "x509",
      "-req",
      "-in",
      "srv.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "srv.crt",
      "-days",
      "1",
      "-extfile",
      "ext",
    ]);
    ca = readFileSync(join(dir, "ca.crt"), "utf8");
    ghes = await startSim({
      enterprise: true,
      tls: {
        cert: readFileSync(join(dir, "srv.crt"), "utf8"),
        key: readFileSync(join(dir, "srv.key"), "utf8"),
      },
    });
  });
  afterAll(() => ghes.close());

  it("fails without the CA bundle and mints with it", async () => {
    const without = await caught(
      new GitHubClient({ baseUrl: ghes.apiUrl, clock: systemClock }).mintToken(app, 2),
    );
    expect(without.code).toBe("GitHubUnavailable");
    const minted = await new GitHubClient({
      baseUrl: `${ghes.apiUrl}/`,
      caBundle: ca,
      clock: systemClock,
    }).mintToken(app, 2);
    expect(minted.token).toMatch(/^ghs_[A-Za-z0-9]{36}$/);
  });
});

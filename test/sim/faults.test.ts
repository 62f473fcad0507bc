import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Simulator } from "../../src/sim/simulator.ts";
import { call, mint, startSim, validJwt } from "./helpers.ts";

let sim: Simulator;
beforeAll(async () => {
  sim = await startSim({ rateLimit: { limit: 3, windowSeconds: 3600 } });
});
afterEach(() => sim.faults.clear());
afterAll(() => sim.close());

const op = "apps/create-installation-access-token";

describe("fault injection", () => {
  it("answers an injected 5xx the given number of times, then recovers", async () => {
    sim.faults.add({ route: op, fault: { kind: "status", status: 503 }, count: 2 });
    expect((await mint(sim, 2)).status).toBe(503);
    expect((await mint(sim, 2)).status).toBe(503);
    expect((await mint(sim, 2)).status).toBe(201);
  });

  it("adds latency", async () => {
    sim.faults.add({ route: "*", fault: { kind: "latency", ms: 150 }, count: 1 });
    const t0 = performance.now();
    expect((await mint(sim, 2)).status).toBe(201);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it("resets the connection", async () => {
    sim.faults.add({ route: op, fault: { kind: "reset" }, count: 1 });
    await expect(mint(sim, 2)).rejects.toThrow();
    expect((await mint(sim, 2)).status).toBe(201);
  });

  it.each([403, 429] as const)("primary rate limit with %i and a reset time", async (status) => {
    sim.faults.add({ route: op, fault: { kind: "primaryRateLimit", status, resetInSeconds: 120 }, count: 1 });
    const r = await mint(sim, 2);
    expect(r.status).toBe(status);
    expect(r.headers.get("x-ratelimit-remaining")).toBe("0");
    expect(Number(r.headers.get("x-ratelimit-reset")) * 1000 - Date.now()).toBeGreaterThan(100_000);
    expect((r.body as { message: string }).message).toMatch(
      /^API rate limit exceeded for installation ID 2\.$/,
    );
  });

  it.each([
    [403, 30],
    [429, undefined],
  ] as const)("secondary rate limit with %i and retry-after %s", async (status, retryAfterSeconds) => {
    sim.faults.add({
      route: op,
      fault: { kind: "secondaryRateLimit", status, ...(retryAfterSeconds ? { retryAfterSeconds } : {}) },
      count: 1,
    });
    const r = await mint(sim, 2);
    expect(r.status).toBe(status);
    expect(r.headers.get("retry-after")).toBe(
      retryAfterSeconds === undefined ? null : String(retryAfterSeconds),
    );
    expect((r.body as { message: string }).message).toContain("secondary rate limit");
  });

  it("makes a fresh token answer 401 during the replication lag, then work", async () => {
    sim.faults.add({ route: op, fault: { kind: "replicationLag", ms: 300 }, count: 1 });
    const token = ((await mint(sim, 2)).body as { token: string }).token;
    expect((await call(sim, "GET", "/installation/repositories", { auth: `token ${token}` })).status).toBe(
      401,
    );
    await expect
      .poll(
        async () => (await call(sim, "GET", "/installation/repositories", { auth: `token ${token}` })).status,
      )
      .toBe(200);
  });

  it("can be driven through the admin endpoint, which is never counted", async () => {
    sim.resetCounts();
    const add = await call(sim, "POST", "/_sim/faults", {
      body: { route: op, fault: { kind: "status", status: 502 }, count: 1 },
    });
    expect(add.status).toBe(200);
    expect((await mint(sim, 2)).status).toBe(502);
    expect((await call(sim, "DELETE", "/_sim/faults")).body).toEqual([]);
    const counts = (await call(sim, "GET", "/_sim/counts")).body as {
      total: number;
      byRouteStatus: Record<string, number>;
      byInstallation: Record<string, number>;
    };
    expect(counts.total).toBe(1);
    expect(counts.byRouteStatus[`${op} 502`]).toBe(1);
  });
});

describe("rate limits and accounting", () => {
  it("shares one budget per installation across its tokens and answers 403 when it is spent", async () => {
    const a = ((await mint(sim, 1)).body as { token: string }).token;
    const b = ((await mint(sim, 1)).body as { token: string }).token;
    const used = [];
    for (const t of [a, b, a])
      used.push(
        (await call(sim, "GET", "/installation/repositories", { auth: `token ${t}` })).headers.get(
          "x-ratelimit-remaining",
        ),
      );
    expect(used).toEqual(["2", "1", "0"]);
    const spent = await call(sim, "GET", "/installation/repositories", { auth: `token ${b}` });
    expect(spent).toMatchObject({
      status: 403,
      body: { message: "API rate limit exceeded for installation ID 1." },
    });
    expect(spent.headers.get("x-ratelimit-resource")).toBe("core");
  });

  it("counts per route, status, App and installation, and lists live tokens with their scope", async () => {
    sim.resetCounts();
    const token = ((await mint(sim, 2, { permissions: { contents: "read" } })).body as { token: string })
      .token;
    await mint(sim, 99);
    const c = sim.counts();
    expect(c.byRoute[op]).toBe(2);
    expect(c.byRouteStatus[`${op} 201`]).toBe(1);
    expect(c.byRouteStatus[`${op} 404`]).toBe(1);
    expect(c.byApp["100"]).toBe(2);
    expect(c.byInstallation["2"]).toBe(1);
    const live = (await call(sim, "GET", "/_sim/tokens")).body as {
      installationId: number;
      permissions: unknown;
    }[];
    expect(live.some((t) => t.installationId === 2)).toBe(true);
    const check = (
      await call(sim, "POST", "/_sim/check-token", { body: { token, repository: "octocat/hello" } })
    ).body;
    expect(check).toMatchObject({
      live: true,
      scope: { installationId: 2, permissions: { contents: "read" } },
    });
  });

  it("suspends and deletes installations from the admin endpoint", async () => {
    await call(sim, "POST", "/_sim/installations/2/suspend");
    expect((await mint(sim, 2)).status).toBe(403);
    await call(sim, "POST", "/_sim/installations/2/unsuspend");
    expect((await mint(sim, 2)).status).toBe(201);
  });
});

describe("token lifetime", () => {
  it("expires tokens after the configured lifetime", async () => {
    const short = await startSim({ tokenLifetimeSeconds: 1 });
    try {
      const r = await mint(short, 2);
      const body = r.body as { token: string; expires_at: string };
      expect(Date.parse(body.expires_at) - Date.now()).toBeLessThanOrEqual(1000);
      await expect.poll(() => short.checkToken(body.token).live, { timeout: 5000 }).toBe(false);
      expect(short.checkToken(body.token).reason).toBe("expired");
    } finally {
      await short.close();
    }
  });

  it("serves Enterprise Server paths and never issues stateless tokens there", async () => {
    const ghes = await startSim({ enterprise: true, tokenFormat: "stateless" });
    try {
      expect(ghes.apiUrl).toBe(`${ghes.url}/api/v3`);
      const r = await call(ghes, "POST", "/api/v3/app/installations/2/access_tokens", {
        auth: `Bearer ${validJwt()}`,
        headers: { "x-github-stateless-s2s-token": "enabled" },
      });
      expect((r.body as { token: string }).token).toMatch(/^ghs_[A-Za-z0-9]{36}$/);
    } finally {
      await ghes.close();
    }
  });
});

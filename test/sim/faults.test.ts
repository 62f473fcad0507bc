import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { messageOf, startTestSim, type TestSim } from "./helpers.ts";

let t: TestSim;
beforeAll(async () => {
  t = await startTestSim();
});
afterEach(() => t.sim.faults.clear());
afterAll(() => t.close());

const op = "apps/create-installation-access-token";
const reposOp = "apps/list-repos-accessible-to-installation";
const secondary = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";

describe("injected HTTP statuses", () => {
  it("answers the status the given number of times, then recovers", async () => {
    t.sim.faults.add({ route: op, fault: { kind: "status", status: 503 }, count: 2 });
    const first = await t.mint(2);
    expect([first.status, first.body]).toEqual([
      503,
      { message: "Server Error", documentation_url: expect.any(String), status: "503" },
    ]);
    expect(t.sim.faults.list()).toEqual([{ route: op, fault: { kind: "status", status: 503 }, count: 1 }]);
    expect((await t.mint(2)).status).toBe(503);
    expect((await t.mint(2)).status).toBe(201);
    expect(t.sim.faults.list()).toEqual([]);
  });

  it("keeps answering without a count, with the given message", async () => {
    t.sim.faults.add({
      route: "apps/get-authenticated",
      fault: { kind: "status", status: 502, message: "Bad Gateway" },
    });
    for (let i = 0; i < 3; i++)
      expect(messageOf(await t.call("GET", "/app", { auth: t.bearer() }))).toBe("Bad Gateway");
    expect((await t.mint(2)).status).toBe(201); // other routes are untouched
  });

  it("fires with the given probability", async () => {
    const draws = [0.1, 0.9, 0.49, 0.5];
    const chancy = await startTestSim({ random: () => draws.shift() ?? 1 });
    try {
      chancy.sim.faults.add({ route: "*", fault: { kind: "status", status: 500 }, probability: 0.5 });
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await chancy.mint(2)).status);
      expect(statuses).toEqual([500, 201, 500, 201]);
    } finally {
      await chancy.close();
    }
  });

  it("applies a '*' rule to every route, before authentication", async () => {
    t.sim.faults.add({ route: "*", fault: { kind: "status", status: 500 }, count: 3 });
    expect((await t.call("GET", "/app")).status).toBe(500);
    expect((await t.call("GET", "/installation/repositories")).status).toBe(500);
    expect((await t.mint(2)).status).toBe(500);
    expect((await t.mint(2)).status).toBe(201);
  });
});

describe("latency and connection resets", () => {
  it("holds the answer until the simulator's clock has moved by the latency", async () => {
    t.sim.faults.add({ route: op, fault: { kind: "latency", ms: 1500 }, count: 1 });
    let answered = false;
    const pending = t.mint(2).then((r) => {
      answered = true;
      return r;
    });
    await expect.poll(() => t.clock.pendingTimers).toBe(1);
    t.clock.advance(1499);
    expect(answered).toBe(false);
    t.clock.advance(1);
    expect((await pending).status).toBe(201);
  });

  it("adds latency before another fault", async () => {
    t.sim.faults.add({ route: op, fault: { kind: "latency", ms: 10 }, count: 1 });
    t.sim.faults.add({ route: op, fault: { kind: "status", status: 504 }, count: 1 });
    const pending = t.mint(2);
    await expect.poll(() => t.clock.pendingTimers).toBe(1);
    t.clock.advance(10);
    expect((await pending).status).toBe(504);
  });

  it("resets the connection, counts it as status 0, then recovers", async () => {
    t.sim.resetCounts();
    t.sim.faults.add({ route: op, fault: { kind: "reset" }, count: 1 });
    await expect(t.mint(2)).rejects.toThrow();
    expect((await t.mint(2)).status).toBe(201);
    expect(t.sim.counts().byRouteStatus).toEqual({ [`${op} 0`]: 1, [`${op} 201`]: 1 });
  });
});

describe("rate limits", () => {
  it.each([403, 429] as const)(
    "primary: %i with x-ratelimit-remaining 0 and the reset in N seconds",
    async (status) => {
      t.sim.faults.add({
        route: op,
        fault: { kind: "primaryRateLimit", status, resetInSeconds: 120 },
        count: 1,
      });
      const r = await t.mint(2);
      expect([r.status, messageOf(r)]).toEqual([status, "API rate limit exceeded for installation ID 2."]);
      expect(r.headers.get("x-ratelimit-remaining")).toBe("0");
      expect(r.headers.get("x-ratelimit-resource")).toBe("core");
      expect(Number(r.headers.get("x-ratelimit-reset"))).toBe(Math.ceil(t.clock.now() / 1000) + 120);
      expect((await t.mint(2)).status).toBe(201);
    },
  );

  it("primary: resets at a given epoch second, 403 by default, naming the token's installation", async () => {
    const resetAt = Math.floor(t.clock.now() / 1000) + 999;
    t.sim.faults.add({ route: reposOp, fault: { kind: "primaryRateLimit", resetAt }, count: 1 });
    const token = await t.token(1);
    const r = await t.call("GET", "/installation/repositories", { auth: `token ${token}` });
    expect([r.status, messageOf(r)]).toEqual([403, "API rate limit exceeded for installation ID 1."]);
    expect(r.headers.get("x-ratelimit-reset")).toBe(String(resetAt));
  });

  it.each([
    [403, 30],
    [429, 5],
    [403, undefined],
    [429, undefined],
  ] as const)("secondary: %i with retry-after %s", async (status, retryAfterSeconds) => {
    t.sim.faults.add({
      route: op,
      fault: {
        kind: "secondaryRateLimit",
        status,
        ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
      },
      count: 1,
    });
    const r = await t.mint(2);
    expect([r.status, messageOf(r)]).toEqual([status, secondary]);
    expect(r.headers.get("retry-after")).toBe(
      retryAfterSeconds === undefined ? null : String(retryAfterSeconds),
    );
  });
});

describe("replication lag right after a mint", () => {
  it("answers 401 Bad credentials to the fresh token for the lag, then works", async () => {
    t.sim.faults.add({ route: op, fault: { kind: "replicationLag", ms: 3000 }, count: 1 });
    const token = await t.token(2);
    const auth = { auth: `token ${token}` };
    const early = await t.call("GET", "/installation/repositories", auth);
    expect([early.status, messageOf(early)]).toEqual([401, "Bad credentials"]);
    expect(t.sim.checkToken(token)).toMatchObject({ live: false, reason: "not yet replicated" });
    t.clock.advance(3000);
    expect((await t.call("GET", "/installation/repositories", auth)).status).toBe(200);
    expect(await t.token(2)).not.toBe(token); // the next token has no lag
  });

  it("answers 403 while scoped permissions lag, when asked to", async () => {
    t.sim.faults.add({ route: op, fault: { kind: "replicationLag", ms: 1000, status: 403 }, count: 1 });
    const token = await t.token(2, { permissions: { contents: "read" } });
    const early = await t.call("GET", "/installation/repositories", { auth: `token ${token}` });
    expect([early.status, messageOf(early)]).toEqual([403, "Resource not accessible by integration"]);
    t.clock.advance(1000);
    expect((await t.call("GET", "/installation/repositories", { auth: `token ${token}` })).status).toBe(200);
  });
});

describe("fault rules", () => {
  it("are refused with a readable error when malformed", () => {
    expect(() => t.sim.faults.add({ route: "apps/teleport" as "*", fault: { kind: "reset" } })).toThrow(
      /route/,
    );
    expect(() => t.sim.faults.add({ route: op, fault: { kind: "status", status: 200 } })).toThrow(/status/);
    expect(() => t.sim.faults.add({ route: op, fault: { kind: "reset" }, probability: 2 })).toThrow(
      /probability/,
    );
    expect(t.sim.faults.list()).toEqual([]);
  });

  it("can be added, listed and cleared through the admin endpoint, which is never counted", async () => {
    t.sim.resetCounts();
    const rule = { route: op, fault: { kind: "status", status: 502 }, count: 1 };
    const added = await t.call("POST", "/_sim/faults", { body: rule });
    expect([added.status, added.body]).toEqual([200, [rule]]);
    expect((await t.call("GET", "/_sim/faults")).body).toEqual([rule]);
    expect((await t.mint(2)).status).toBe(502);
    await t.call("POST", "/_sim/faults", { body: [rule, { ...rule, count: 5 }] });
    expect((await t.call("DELETE", "/_sim/faults")).body).toEqual([]);
    expect((await t.mint(2)).status).toBe(201);
    const bad = await t.call("POST", "/_sim/faults", { body: { route: op, fault: { kind: "explode" } } });
    expect(bad.status).toBe(400);
    expect(messageOf(bad)).toContain("kind");
    expect(t.sim.counts().total).toBe(2);
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { messageOf, startTestSim, type TestSim } from "./helpers.ts";

let t: TestSim;
beforeAll(async () => {
  t = await startTestSim({ rateLimit: { limit: 3, windowSeconds: 60 } });
});
afterAll(() => t.close());

const repos = (token: string) => t.call("GET", "/installation/repositories", { auth: `token ${token}` });

describe("the primary rate limit of installation tokens", () => {
  it("sends GitHub's headers on token routes, none on JWT routes", async () => {
    const token = await t.token(2);
    const start = t.clock.now();
    const r = await repos(token);
    expect(Object.fromEntries([...r.headers].filter(([k]) => k.startsWith("x-ratelimit-")))).toEqual({
      "x-ratelimit-limit": "3",
      "x-ratelimit-remaining": "2",
      "x-ratelimit-used": "1",
      "x-ratelimit-reset": String(Math.ceil((start + 60_000) / 1000)),
      "x-ratelimit-resource": "core",
    });
    for (const path of ["/app", "/app/installations", "/app/installations/2"]) {
      const jwtRoute = await t.call("GET", path, { auth: t.bearer() });
      expect(jwtRoute.headers.get("x-ratelimit-limit"), path).toBeNull();
    }
    expect((await t.mint(2)).headers.get("x-ratelimit-remaining")).toBeNull();
  });

  it("is one budget per installation, shared by its tokens, refused with 403 when spent and refilled at reset", async () => {
    t.clock.advance(60_000); // a fresh window
    const a = await t.token(1);
    const b = await t.token(1);
    const other = await t.token(2);
    const remaining = [];
    for (const token of [a, b, a]) remaining.push((await repos(token)).headers.get("x-ratelimit-remaining"));
    expect(remaining).toEqual(["2", "1", "0"]);

    const spent = await repos(b);
    expect([spent.status, messageOf(spent)]).toEqual([403, "API rate limit exceeded for installation ID 1."]);
    expect(spent.headers.get("x-ratelimit-remaining")).toBe("0");
    expect(spent.headers.get("x-ratelimit-resource")).toBe("core");
    const revoke = await t.call("DELETE", "/installation/token", { auth: `token ${a}` });
    expect(revoke.status).toBe(403);
    expect(t.sim.checkToken(a).live).toBe(true);

    expect((await repos(other)).status).toBe(200); // installation 2 has its own budget

    t.clock.advance(60_000);
    const refilled = await repos(b);
    expect(refilled.status).toBe(200);
    expect(refilled.headers.get("x-ratelimit-remaining")).toBe("2");
  });

  it("can be switched off", async () => {
    const free = await startTestSim({ rateLimit: false });
    try {
      const token = await free.token(2);
      const r = await free.call("GET", "/installation/repositories", { auth: `token ${token}` });
      expect(r.headers.get("x-ratelimit-limit")).toBeNull();
    } finally {
      await free.close();
    }
  });

  it("defaults to 5,000 requests an hour", async () => {
    const gh = await startTestSim();
    try {
      const token = await gh.token(2);
      const r = await gh.call("GET", "/installation/repositories", { auth: `token ${token}` });
      expect(r.headers.get("x-ratelimit-limit")).toBe("5000");
      expect(Number(r.headers.get("x-ratelimit-reset"))).toBe(Math.ceil((gh.clock.now() + 3600_000) / 1000));
    } finally {
      await gh.close();
    }
  });

  it("applies on Enterprise Server only when configured", async () => {
    const ghes = await startTestSim({ enterprise: true, rateLimit: { limit: 10, windowSeconds: 3600 } });
    try {
      const token = await ghes.token(2);
      const r = await ghes.call("GET", "/api/v3/installation/repositories", { auth: `token ${token}` });
      expect(r.headers.get("x-ratelimit-limit")).toBe("10");
    } finally {
      await ghes.close();
    }
  });
});

import { createAppAuth } from "@octokit/auth-app";
import { request } from "@octokit/request";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appId, clientId, keys, startTestSim, type TestSim } from "./helpers.ts";

let t: TestSim;
beforeAll(async () => {
  // auth-app signs its JWTs with the real clock, so the simulator's fake clock starts there.
  t = await startTestSim({ start: Date.now(), tokenFormat: "stateless" });
});
afterAll(() => t.close());

describe("@octokit/auth-app 8.3.1, unchanged, against the simulator", () => {
  it.each([
    ["the numeric App id and a PKCS#1 key", appId, keys.privateKeyPkcs1Pem],
    ["the client id and a PKCS#8 key", clientId, keys.privateKeyPkcs8Pem],
  ])("mints a live token with %s", async (_case, id, privateKey) => {
    const auth = createAppAuth({
      appId: id,
      privateKey,
      request: request.defaults({ baseUrl: t.sim.apiUrl }),
    });
    const result = await auth({
      type: "installation",
      installationId: 1,
      permissions: { contents: "read" },
      repositoryNames: ["app"],
      refresh: true,
    });
    expect(result.token).toMatch(/^ghs_100_/);
    expect(result.expiresAt).toBe(t.sim.checkToken(result.token).scope?.expiresAt);
    expect(t.sim.checkToken(result.token, "acme/app").live).toBe(true);
    expect(t.sim.checkToken(result.token, "acme/lib").live).toBe(false);
    expect(t.sim.checkToken(result.token).scope?.permissions).toEqual({ contents: "read" });
  });

  it("corrects for the simulator's clock being behind, through the Date header, in its request hook", async () => {
    const warnings: string[] = [];
    const quiet = () => {};
    const base = request.defaults({ baseUrl: t.sim.apiUrl });
    const auth = createAppAuth({
      appId,
      privateKey: keys.privateKeyPkcs1Pem,
      request: base,
      log: { warn: (message: string) => warnings.push(message), debug: quiet, info: quiet, error: quiet },
    });
    t.sim.setClockOffset(-3 * 60_000);
    try {
      const app = await base.defaults({ request: { hook: auth.hook } })("GET /app");
      expect(app.data).toMatchObject({ id: appId });
      expect(warnings.join("\n")).toContain("'Expiration time' claim ('exp') is too far in the future");
    } finally {
      t.sim.setClockOffset(0);
    }
  });
});

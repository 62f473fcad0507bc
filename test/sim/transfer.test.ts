import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSeed } from "../../src/sim/seed.ts";
import { appId, call, startTestSim, type TestSim } from "./helpers.ts";

let t: TestSim;
beforeAll(async () => {
  t = await startTestSim();
  // acme/legacy-tool was transferred to other-org, where the same App is installed (id 5).
  t.sim.state.addInstallation({
    id: 5,
    appId,
    account: { login: "other-org", type: "Organization" },
    permissions: { contents: "write", metadata: "read" },
  });
  t.sim.state.addRepository({
    id: 41,
    owner: "other-org",
    name: "legacy-tool",
    transferredFrom: ["acme/legacy-tool"],
  });
});
afterAll(() => t.close());

describe("transferred repositories", () => {
  it("answers 301 for the old owner/name, pointing at the repository id, as GitHub does", async () => {
    const r = await t.call("GET", "/repos/acme/legacy-tool/installation", { auth: t.bearer() });
    const location = `${t.sim.apiUrl}/repositories/41/installation`;
    expect(r.status).toBe(301);
    expect(r.headers.get("location")).toBe(location);
    expect(r.body).toMatchObject({ message: "Moved Permanently", url: location });
  });

  it("leads to the new owner's installation when followed", async () => {
    const followed = await call(t.sim.url, "GET", "/repositories/41/installation", { auth: t.bearer() });
    expect(followed.status).toBe(200);
    expect(followed.body).toMatchObject({ id: 5, account: { login: "other-org" } });
  });

  it("matches the old name case-insensitively and answers the new name directly", async () => {
    expect((await t.call("GET", "/repos/ACME/Legacy-Tool/installation", { auth: t.bearer() })).status).toBe(
      301,
    );
    const direct = await t.call("GET", "/repos/other-org/legacy-tool/installation", { auth: t.bearer() });
    expect(direct.body).toMatchObject({ id: 5 });
  });

  it("is a seed field that must name owner/name", () => {
    const repo = { id: 1, owner: "b", name: "r" };
    expect(
      parseSeed({ repositories: [{ ...repo, transferredFrom: ["a/r"] }] }).repositories[0],
    ).toMatchObject({ transferredFrom: ["a/r"] });
    expect(() => parseSeed({ repositories: [{ ...repo, transferredFrom: ["r"] }] })).toThrow(/owner\/name/);
  });
});

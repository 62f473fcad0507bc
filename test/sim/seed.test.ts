import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadSeedFile, parseSeed } from "../../src/sim/seed.ts";
import { SimState } from "../../src/sim/state.ts";
import { keys } from "./helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "ghat-sim-seed-"));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}
const pemYaml = keys.publicKeyPem
  .trim()
  .split("\n")
  .map((l) => `        ${l}`)
  .join("\n");

describe("the seed file", () => {
  it("is read from YAML, with defaults filled in", () => {
    const seed = loadSeedFile(
      file(
        "seed.yaml",
        `apps:
  - id: 1001
    clientId: Iv23liExample
    slug: my-app
    publicKeys:
      - |
${pemYaml}
installations:
  - id: 5001
    appId: 1001
    account: { login: acme }
    permissions: { contents: write, metadata: read }
    repositorySelection: selected
    repositoryIds: [7001]
repositories:
  - { id: 7001, owner: acme, name: app }
`,
      ),
    );
    expect(seed.apps[0]).toMatchObject({ id: 1001, owner: "github" });
    expect(seed.installations[0]).toMatchObject({ account: { login: "acme", type: "Organization" } });
    expect(seed.repositories[0]).toMatchObject({ private: true });
  });

  it("is read from JSON", () => {
    const seed = loadSeedFile(
      file("seed.json", JSON.stringify({ repositories: [{ id: 1, owner: "a", name: "b" }] })),
    );
    expect(seed).toEqual({
      apps: [],
      installations: [],
      repositories: [{ id: 1, owner: "a", name: "b", private: true }],
    });
  });

  it("names the file and every bad field", () => {
    const path = file(
      "bad.yaml",
      `apps:
  - id: -1
    slug: x
    publicKeys: ["not a key"]
installations:
  - id: 5
    appId: 1
    account: { login: acme, type: Team }
    permissions: { contents: everything }
`,
    );
    let message = "";
    try {
      loadSeedFile(path);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain(`seed file ${path} is invalid`);
    for (const field of [
      "apps[0].id",
      "apps[0].clientId",
      "apps[0].publicKeys[0]",
      "installations[0].account.type",
      "installations[0].permissions.contents",
    ]) {
      expect(message).toContain(field);
    }
  });

  it("checks references between Apps, installations and repositories", () => {
    expect(() =>
      parseSeed({
        apps: [],
        installations: [
          { id: 1, appId: 9, account: { login: "acme" }, permissions: {}, repositoryIds: [7, 8] },
        ],
        repositories: [
          { id: 7, owner: "someone-else", name: "x" },
          { id: 6, owner: "acme", name: "y" },
          { id: 6, owner: "acme", name: "z" },
        ],
      }),
    ).toThrow(
      [
        "seed is invalid:",
        "✖ repository id 6 appears more than once",
        "✖ installation 1: appId 9 is not an App of the seed",
        "✖ installation 1: repository someone-else/x is not owned by acme",
        "✖ installation 1: repository id 8 is not a repository of the seed",
      ].join("\n"),
    );
  });

  it("says so when the file cannot be read or parsed", () => {
    expect(() => loadSeedFile(join(dir, "missing.yaml"))).toThrow(/cannot be read/);
    expect(() => loadSeedFile(file("broken.yaml", "apps: [\n"))).toThrow(/cannot be read/);
  });
});

describe("the simulator's state", () => {
  const app = { id: 1, clientId: "Iv1", slug: "a", publicKeys: [keys.publicKeyPem] };

  it("refuses an installation of an unknown App, a reused id or an unknown repository", () => {
    const s = new SimState({ apps: [app, { ...app, id: 2, clientId: "Iv2" }] });
    const inst = { id: 10, appId: 1, account: { login: "acme" }, permissions: {} };
    expect(() => s.addInstallation({ ...inst, appId: 3 })).toThrow("installation 10: no App 3");
    s.addInstallation(inst);
    expect(() => s.addInstallation({ ...inst, appId: 2 })).toThrow("ids are unique across Apps");
    expect(() => s.addInstallation({ ...inst, repositoryIds: [99] })).toThrow("no repository 99");
    expect(() => s.addApp({ ...app, publicKeys: [] })).toThrow(/publicKeys/);
  });

  it("removes an App with its installations, and a repository from selections", () => {
    const s = new SimState({
      apps: [app],
      repositories: [{ id: 5, owner: "acme", name: "r" }],
      installations: [
        {
          id: 10,
          appId: 1,
          account: { login: "acme" },
          permissions: {},
          repositorySelection: "selected",
          repositoryIds: [5],
        },
      ],
    });
    s.removeRepository(5);
    expect(s.installations.get(10)?.repositoryIds).toEqual([]);
    s.removeApp(1);
    expect([s.apps.size, s.installations.size]).toEqual([0, 0]);
  });

  it("finds Apps by numeric id, numeric string or client id", () => {
    const s = new SimState({ apps: [app] });
    expect([s.findApp(1)?.id, s.findApp("1")?.id, s.findApp("Iv1")?.id, s.findApp("Iv9")]).toEqual([
      1,
      1,
      1,
      undefined,
    ]);
  });
});

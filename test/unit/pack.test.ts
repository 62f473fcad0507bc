import { execFile } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;

/** What `npm pack` would put in the tarball, read without building or running any script. */
async function packed(cwd: string): Promise<{ name: string; files: string[] }> {
  const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd,
    env: { ...process.env, npm_config_update_notifier: "false", npm_config_fund: "false" },
    maxBuffer: 16 << 20,
  });
  const [result] = JSON.parse(stdout) as [{ name: string; files: { path: string }[] }];
  return { name: result.name, files: result.files.map((f) => f.path).sort() };
}

/** The only top-level entries the package may hold. */
const allowedTopLevel = new Set(["dist", "crds", "README.md", "LICENSE", "CHANGELOG.md", "package.json"]);

function unwanted(path: string): boolean {
  const top = path.split("/")[0] ?? path;
  return (
    !allowedTopLevel.has(top) ||
    path.endsWith(".map") ||
    /\.test\.[cm]?[jt]s$/.test(path) ||
    (path.endsWith(".ts") && !path.endsWith(".d.ts"))
  );
}

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  name: string;
  bin: Record<string, string>;
};

describe("package.json", () => {
  it("names the npm package ghat-operator and keeps the ghat command", () => {
    expect(pkg.name).toBe("ghat-operator");
    expect(pkg.bin).toEqual({ ghat: "dist/cli.js" });
  });

  it("agrees with package-lock.json on the name", () => {
    const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as {
      name: string;
      packages: Record<string, { name?: string }>;
    };
    expect(lock.name).toBe(pkg.name);
    expect(lock.packages[""]?.name).toBe(pkg.name);
  });
});

describe("npm pack in the repository", () => {
  let result: { name: string; files: string[] };
  beforeAll(async () => {
    result = await packed(root);
  }, 30_000);

  it("is the ghat-operator package", () => {
    expect(result.name).toBe("ghat-operator");
  });

  it("ships the README, the licence, the changelog, package.json and every CRD", () => {
    const crds = readdirSync(join(root, "crds"))
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => `crds/${f}`);
    expect(crds.length).toBeGreaterThan(0);
    expect(result.files).toEqual(
      expect.arrayContaining(["README.md", "LICENSE", "CHANGELOG.md", "package.json", ...crds]),
    );
  });

  it("ships no tests, sources, source maps, tooling, local state or dependencies", () => {
    expect(result.files.filter(unwanted)).toEqual([]);
  });
});

/**
 * dist/ exists only after a build, so the repository alone cannot show what a built tree
 * packs. This copies package.json (and .gitignore, which ignores dist/) next to a fake build
 * output and fake project files, and packs that.
 */
describe("npm pack of a built tree", () => {
  let dir: string;
  let result: { name: string; files: string[] };
  const tree = [
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "crds/githubapptokens.ghat.dev.yaml",
    "dist/cli.js",
    "dist/main.js",
    "dist/sim/command.js",
    "dist/cli.js.map",
    "dist/core/plan.js",
    "dist/core/plan.js.map",
    "dist/core/plan.test.js",
    "src/cli.ts",
    "src/core/plan.test.ts",
    "test/unit/pack.test.ts",
    "bench/run.ts",
    "hack/gen-crds.ts",
    "docs/security.md",
    "examples/plain.yaml",
    "charts/ghat/Chart.yaml",
    ".local/kubeconfig",
    ".ci/run",
    "node_modules/yaml/index.js",
    "Dockerfile",
    "tsconfig.json",
  ];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ghat-pack-"));
    cpSync(join(root, "package.json"), join(dir, "package.json"));
    cpSync(join(root, ".gitignore"), join(dir, ".gitignore"));
    for (const file of tree) {
      mkdirSync(join(dir, dirname(file)), { recursive: true });
      writeFileSync(join(dir, file), "x\n");
    }
    result = await packed(dir);
  }, 30_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("ships the compiled JavaScript, including the bin and the image's entry point", () => {
    expect(result.files).toEqual(
      expect.arrayContaining([pkg.bin.ghat, "dist/main.js", "dist/sim/command.js", "dist/core/plan.js"]),
    );
  });

  it("ships exactly the allowed files and nothing else", () => {
    expect(result.files).toEqual([
      "CHANGELOG.md",
      "LICENSE",
      "README.md",
      "crds/githubapptokens.ghat.dev.yaml",
      "dist/cli.js",
      "dist/core/plan.js",
      "dist/main.js",
      "dist/sim/command.js",
      "package.json",
    ]);
    expect(result.files.filter(unwanted)).toEqual([]);
  });
});

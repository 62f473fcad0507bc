import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeconfigPath, kubectl } from "../support/cluster.ts";
import { useOperator } from "./fixture.ts";
import { tokenYaml } from "./operator.ts";
import { localFlags, OperatorProcess } from "./processes.ts";

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;

/**
 * The npm package as users install it (`ghat-operator`): `npm ci --omit=dev` into a clean
 * directory, the compiled dist/, then `node dist/main.js`. (The image ships the single-file
 * bundle instead: test/unit/bundle.test.ts.)
 */
describe("the production install", () => {
  let dir: string;
  let op: OperatorProcess | undefined;
  const fx = useOperator();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ghat-image-"));
    cpSync(join(root, "package.json"), join(dir, "package.json"));
    cpSync(join(root, "package-lock.json"), join(dir, "package-lock.json"));
    await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], {
      cwd: dir,
      maxBuffer: 16 << 20,
    });
    await run(join(root, "node_modules/.bin/tsc"), [
      "-p",
      join(root, "tsconfig.build.json"),
      "--outDir",
      join(dir, "dist"),
    ]);
  }, 240_000);
  afterAll(async () => {
    op?.kill("SIGKILL");
    await op?.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it("has no dev dependency installed", async () => {
    const { stdout } = await run("npm", ["ls", "--omit=dev", "--depth=0", "--parseable"], { cwd: dir });
    expect(stdout).not.toMatch(/vitest|typescript|@biomejs|fast-check|@octokit\/auth-app/);
  });

  it("starts from dist/main.js and reconciles a token", async () => {
    const ns = await fx.withApp("image");
    op = new OperatorProcess(
      [...localFlags(kubeconfigPath()), "--namespaces", ns],
      join(dir, "dist/main.js"),
      dir,
    );
    await op.waitFor("Started ghat");
    expect((await kubectl(["-n", ns, "apply", "-f", "-"], { input: tokenYaml("img", {}) })).code).toBe(0);
    expect(
      (await kubectl(["-n", ns, "wait", "--for=condition=Ready", "ghat/img", "--timeout=60s"])).code,
    ).toBe(0);
    expect(fx.github.sim.checkToken((await fx.kube.secretValue(ns, "img-token")) ?? "").live).toBe(true);
    op.kill("SIGTERM");
    expect(await op.exited).toBe(0);
  });
});

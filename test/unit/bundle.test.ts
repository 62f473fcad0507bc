import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundle, prettyUnavailable } from "../../hack/bundle.ts";
import { localFlags } from "../e2e/processes.ts";

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };

/**
 * The main file is about 0.45 MiB minified today; client-node's generated API and model
 * classes, which the bundle leaves out (hack/bundle.ts), would add more than 1 MiB.
 */
const MAX_BYTES = 2 ** 20;

/**
 * The container's entry point, bundled the way `npm run bundle` does into a directory that
 * holds nothing else: no node_modules and no package.json beside or above it (the image ships
 * the file alone).
 */
describe("the single-file bundle (dist/ghat.mjs)", () => {
  let dir: string;
  let file: string;
  let warnings: string[];
  const node = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [file, ...args], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "", ...env },
      timeout: 15_000,
    });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ghat-bundle-"));
    // <dir>/dist/ghat.mjs: version.ts would look for <dir>/package.json, which is not there.
    mkdirSync(join(dir, "dist"));
    ({ outfile: file, warnings } = await bundle(join(dir, "dist/ghat.mjs")));
  }, 60_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`is one JavaScript file under ${MAX_BYTES / 2 ** 20} MiB, plus the keyless signers' chunks`, () => {
    const files = readdirSync(dir, { recursive: true }).map(String).sort();
    expect(files.filter((f) => !f.startsWith("dist/chunks/"))).toEqual([
      "dist",
      "dist/chunks",
      "dist/ghat.mjs",
    ]);
    expect(files.filter((f) => f.startsWith("dist/chunks/")).every((f) => f.endsWith(".mjs"))).toBe(true);
    expect(statSync(file).size).toBeLessThan(MAX_BYTES);
    expect(warnings).toEqual([]);
  });

  it("loads no signer SDK at start: each backend's code is in a chunk imported only when an App uses it", () => {
    // What `node dist/ghat.mjs` loads before any App asks for a signer: the main file and the
    // chunks it imports statically (import … from), transitively; import() is lazy.
    const read = (f: string) => readFileSync(join(dir, "dist", f), "utf8");
    const loaded = new Map<string, string>();
    const visit = (f: string) => {
      if (loaded.has(f)) return;
      const text = read(f);
      loaded.set(f, text);
      for (const m of text.matchAll(
        /(?:^|[;}])\s*import\s*(?:[^"'()]*?\s*from\s*)?["']\.\/(?:chunks\/)?([^"']+\.mjs)["']/g,
      ))
        visit(f.startsWith("chunks/") ? `chunks/${m[1]}` : `chunks/${m[1]}`);
    };
    visit("ghat.mjs");
    expect(loaded.size, "the main file imports shared chunks").toBeGreaterThan(1);
    const eager = [...loaded.values()].join("\n");
    const all = readdirSync(join(dir, "dist/chunks"))
      .map((f) => read(`chunks/${f}`))
      .join("\n");
    // Vault's login path, Cloud KMS's sign call, AWS KMS's wire target, PKCS#11's sign, Google's metadata host.
    for (const marker of [
      "/v1/auth/",
      ":asymmetricSign",
      "TrentService",
      "C_SignInit",
      "metadata.google.internal",
    ]) {
      expect(eager.includes(marker), `${marker} loaded at start`).toBe(false);
      expect(all.includes(marker), `${marker} in a lazy chunk`).toBe(true);
    }
  });

  it("loads neither undici nor Node's own fetch at start: undici is a chunk for proxies alone", async () => {
    const read = (f: string) => readFileSync(join(dir, "dist", f), "utf8");
    const chunks = readdirSync(join(dir, "dist/chunks"));
    // undici's diagnostics channel: in exactly one chunk, which only an import() names.
    const withUndici = chunks.filter((f) => read(`chunks/${f}`).includes("undici:request:create"));
    expect(withUndici).toHaveLength(1);
    const chunk = withUndici[0] ?? "";
    expect(read("ghat.mjs").includes("undici:request:create")).toBe(false);
    for (const f of chunks) {
      const text = read(`chunks/${f}`);
      expect(text.includes(`import("./${chunk}")`) || !text.includes(chunk), f).toBe(true);
      expect(new RegExp(`from\\s*["']\\./${chunk.replace(".", "\\.")}`).test(text), f).toBe(false);
    }
    // No ES import of a Node built-in (but the banner's node:module): node:http's facade alone
    // loads Node's internal undici.
    for (const f of ["ghat.mjs", ...chunks.map((c) => `chunks/${c}`)]) {
      expect(read(f).match(/from\s*["'](?:node:)?(?!module["'])[a-z_/]+["']/)?.[0] ?? null, f).toBeNull();
    }
    // What the process has loaded once the whole bundle is evaluated (--help exits after it).
    const probe =
      "data:text/javascript,process.on('exit',()=>process.stderr.write(JSON.stringify(" +
      "process.moduleLoadList.filter((m)=>/undici|webstreams/.test(m)))))";
    const { stderr } = await run(process.execPath, ["--import", probe, file, "--help"], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "" },
      timeout: 15_000,
    });
    expect(JSON.parse(stderr)).toEqual([]);
  });

  it("leaves out client-node's generated API and model classes, in every file", () => {
    const all = readdirSync(join(dir, "dist"), { recursive: true })
      .map(String)
      .filter((f) => f.endsWith(".mjs"))
      .map((f) => readFileSync(join(dir, "dist", f), "utf8"))
      .join("\n");
    // CoreV1Api's path of a ConfigMap and ObjectSerializer's name for a Pod template.
    for (const marker of ["/api/v1/namespaces/{namespace}/configmaps", "V1PodTemplateSpec"]) {
      expect(all.includes(marker), marker).toBe(false);
    }
    // KubeConfig is in (it reads kubeconfig files and the in-cluster credentials).
    expect(all.includes("KUBERNETES_SERVICE_HOST")).toBe(true);
  });

  it("prints the version embedded from package.json, and GHAT_REVISION", async () => {
    const { stdout } = await node(["--version"], { GHAT_REVISION: "abc1234" });
    expect(stdout).toBe(`ghat ${pkg.version} (abc1234)\n`);
    expect(pkg.version).not.toBe("unknown");
  });

  it("prints its usage with --help and exits 0", async () => {
    const { stdout } = await node(["--help"]);
    expect(stdout).toMatch(/^Usage: ghat run \[flags\]/);
    expect(stdout).toContain("--log-format");
  });

  it("says clearly that --log-format pretty needs the unbundled build", async () => {
    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(kubeconfig, "apiVersion: v1\nkind: Config\n");
    const err = await node(["--kubeconfig", kubeconfig, "--log-format", "pretty"]).then(
      () => undefined,
      (e: { code?: number; stderr?: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toContain(prettyUnavailable);
  });

  it("runs the operator with JSON logs (no worker thread): its informers reach for the API server", async () => {
    const kubeconfig = join(dir, "kubeconfig-unreachable");
    // A server nobody listens on, over http (which the client refuses): the operator starts
    // its informers, and logs their errors as JSON, until it is stopped.
    writeFileSync(
      kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]",
        "users: [{name: u, user: {token: t}}]",
        "contexts: [{name: x, context: {cluster: c, user: u}}]",
        "current-context: x",
        "",
      ].join("\n"),
    );
    const child = spawn(process.execPath, [file, ...localFlags(kubeconfig)], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    try {
      await expect
        .poll(() => stdout.includes("Restarting informer after error") || child.exitCode !== null, {
          timeout: 15_000,
        })
        .toBe(true);
    } finally {
      child.kill("SIGKILL");
      await exited;
    }
    expect(stderr).toBe("");
    const lines = stdout.split("\n").filter((l) => l !== "");
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(JSON.parse(l)).toHaveProperty("msg");
    expect(stdout).toContain("Restarting informer after error");
  }, 30_000);
});

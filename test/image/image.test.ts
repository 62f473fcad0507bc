import { execFile, spawn } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = new URL("../../", import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
const TAG = "ghat.local/ghat:dev";

/** What `docker save` (and buildah's docker-archive) writes. */
interface ManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}
interface ImageConfig {
  architecture: string;
  os: string;
  config: {
    User?: string;
    Entrypoint?: string[];
    Cmd?: string[] | null;
    Env?: string[];
    Labels?: Record<string, string>;
    ExposedPorts?: Record<string, object>;
    WorkingDir?: string;
  };
  rootfs: { diff_ids: string[] };
}

/** Runs hack/image/build.sh, its progress lines passed through to stderr; resolves with its stdout. */
function build(out: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [join(root, "hack/image/build.sh"), out], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`hack/image/build.sh exited ${code}`)),
    );
  });
}

/** Every path under dir (relative, no leading slash), not following symlinks. */
function walk(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, rel))) {
    const p = rel ? `${rel}/${name}` : name;
    out.push(p);
    if (lstatSync(join(dir, p)).isDirectory()) out.push(...walk(dir, p));
  }
  return out;
}

/**
 * ghat's image as hack/image/build.sh builds it from the Dockerfile (buildah, no Docker daemon,
 * stand-ins for node:24-bookworm-slim and distroless nodejs24): the docker-save tarball's
 * config, the filesystem its layers make, and the operator running from that filesystem.
 * GHAT_IMAGE_TAR names an already built tarball instead of building one.
 */
describe("the container image (Dockerfile, built with buildah)", () => {
  let dir: string;
  let tar: string;
  let rootfs: string;
  let manifest: ManifestEntry[];
  let image: ManifestEntry;
  let config: ImageConfig;
  let layerEntries: string[];
  let revision: string;
  let buildSeconds = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ghat-image-"));
    tar = process.env.GHAT_IMAGE_TAR ?? join(dir, "ghat.tar");
    if (!process.env.GHAT_IMAGE_TAR) {
      const t0 = Date.now();
      const stdout = await build(tar);
      buildSeconds = (Date.now() - t0) / 1000;
      expect(stdout.trim()).toBe(tar);
    }
    const archive = join(dir, "archive");
    rootfs = join(dir, "rootfs");
    mkdirSync(archive);
    mkdirSync(rootfs);
    await run("tar", ["-xf", tar, "-C", archive]);
    manifest = JSON.parse(readFileSync(join(archive, "manifest.json"), "utf8")) as ManifestEntry[];
    const [first] = manifest;
    if (!first) throw new Error(`${tar}: manifest.json lists no image`);
    image = first;
    config = JSON.parse(readFileSync(join(archive, image.Config), "utf8")) as ImageConfig;
    // The layers in order, with their whiteouts applied, as a runtime would stack them (run as
    // root: tar keeps owners and modes).
    layerEntries = [];
    for (const layer of image.Layers) {
      const { stdout } = await run("tar", ["-tf", join(archive, layer)], { maxBuffer: 64 * 2 ** 20 });
      const entries = stdout.split("\n").filter((e) => e !== "");
      layerEntries.push(...entries);
      for (const e of entries) {
        const base = e.replace(/\/$/, "").split("/").pop() ?? "";
        if (base === ".wh..wh..opq") {
          const d = join(rootfs, e.slice(0, -base.length));
          for (const f of existsSync(d) ? readdirSync(d) : [])
            rmSync(join(d, f), { recursive: true, force: true });
        } else if (base.startsWith(".wh.")) {
          rmSync(join(rootfs, e.slice(0, -base.length), base.slice(4)), { recursive: true, force: true });
        }
      }
      await run("tar", ["-xpf", join(archive, layer), "-C", rootfs, "--numeric-owner", "--exclude=.wh.*"]);
    }
    revision = config.config.Labels?.["org.opencontainers.image.revision"] ?? "";
  }, 20 * 60_000);

  afterAll(async () => {
    if (!dir) return;
    const tarBytes = existsSync(tar) ? statSync(tar).size : 0;
    const { stdout } = await run("du", ["-sb", rootfs]).catch(() => ({ stdout: "0" }));
    const unpacked = Number(stdout.split("\t")[0]);
    const { stdout: gz } = await run("bash", ["-c", 'gzip -c "$1" | wc -c', "_", tar]).catch(() => ({
      stdout: "0",
    }));
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    process.stderr.write(
      `image: built in ${buildSeconds.toFixed(0)}s; docker-save tar ${mib(tarBytes)}, gzipped ${mib(Number(gz))}, ` +
        `unpacked ${mib(unpacked)}, ${image?.Layers.length ?? 0} layers\n`,
    );
    rmSync(dir, { recursive: true, force: true });
  });

  it("is a docker-save tarball of one image, tagged for a local load", () => {
    expect(manifest).toHaveLength(1);
    expect(image.RepoTags).toEqual([TAG]);
    expect(config.os).toBe("linux");
    expect(config.rootfs.diff_ids).toHaveLength(image.Layers.length);
  });

  it("runs ghat as the numeric non-root user, with ghat's flags as the only arguments", () => {
    expect(config.config.User).toBe("65532:65532");
    expect(config.config.Entrypoint).toEqual([
      "/nodejs/bin/node",
      "--max-opt=2",
      "--expose-gc",
      "dist/ghat.mjs",
    ]);
    // Docker resets an inherited CMD to null when the Dockerfile sets ENTRYPOINT; buildah to [].
    expect(config.config.Cmd ?? []).toEqual([]);
    expect(config.config.WorkingDir).toBe("/app");
    expect(Object.keys(config.config.ExposedPorts ?? {}).sort()).toEqual(["8080/tcp", "8081/tcp"]);
  });

  it("carries the OCI labels, the revision in GHAT_REVISION and the heap settings in NODE_OPTIONS", async () => {
    const labels = config.config.Labels ?? {};
    expect(labels["org.opencontainers.image.source"]).toBe("https://github.com/ghat-dev/ghat");
    expect(labels["org.opencontainers.image.version"]).toBe(pkg.version);
    expect(labels["org.opencontainers.image.licenses"]).toBe("Apache-2.0");
    expect(labels["org.opencontainers.image.title"]).toBe("ghat");
    // The commit the build saw (full, as the release labels it; -dirty for local changes). HEAD
    // may have moved since: the commit must exist, not be HEAD.
    expect(revision).toMatch(/^[0-9a-f]{40}(-dirty)?$/);
    await run("git", ["cat-file", "-e", `${revision.replace(/-dirty$/, "")}^{commit}`], { cwd: root });
    // Nothing of the build machinery: no builder's identity label, no stand-in marker.
    expect(Object.keys(labels).filter((k) => !k.startsWith("org.opencontainers.image."))).toEqual([]);
    const env = Object.fromEntries((config.config.Env ?? []).map((e) => e.split(/=(.*)/s, 2)));
    expect(env.GHAT_REVISION).toBe(revision);
    expect(env.NODE_OPTIONS).toBe("--max-semi-space-size=8 --max-old-space-size=192");
    expect(env.MALLOC_ARENA_MAX).toBe("2");
    expect(env.NODE_ENV).toBe("production");
  });

  it("holds the bundle and its chunks, read-only and root-owned, and Node", () => {
    const app = walk(join(rootfs, "app")).sort();
    const chunks = app.filter((p) => p.startsWith("dist/chunks/"));
    expect(app.filter((p) => !p.startsWith("dist/chunks/"))).toEqual([
      "dist",
      "dist/chunks",
      "dist/ghat.mjs",
    ]);
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks.every((p) => p.endsWith(".mjs"))).toBe(true);
    const mode = (p: string) => lstatSync(join(rootfs, p)).mode & 0o7777;
    expect(mode("app/dist/ghat.mjs")).toBe(0o444);
    // BuildKit applies --chmod=0555 to the copied directory too (moby/buildkit#4945); buildah
    // 1.28 only to what is in it, and creates dist/chunks 0755. Root-owned either way: 65532
    // cannot write to it.
    expect([0o555, 0o755]).toContain(mode("app/dist/chunks"));
    for (const p of ["app", ...app.map((a) => `app/${a}`)]) {
      const st = lstatSync(join(rootfs, p));
      expect([st.uid, st.gid], p).toEqual([0, 0]);
      // Nobody may write: not the owner of a file, no one but root (0755) on the directories
      // that WORKDIR and COPY created (/app, /app/dist).
      expect(st.mode & 0o022, p).toBe(0);
      if (st.isFile()) expect(st.mode & 0o222, p).toBe(0);
    }
    for (const c of chunks) expect([0o444, 0o555]).toContain(mode(`app/${c}`));
    expect(statSync(join(rootfs, "nodejs/bin/node")).mode & 0o111).not.toBe(0);
  });

  it("ships no node_modules, package.json, npm, source maps or shell", () => {
    const all = walk(rootfs);
    expect(existsSync(join(rootfs, "app/node_modules"))).toBe(false);
    expect(all.filter((p) => /(^|\/)node_modules$/.test(p))).toEqual([]);
    expect(all.filter((p) => /(^|\/)package(-lock)?\.json$/.test(p))).toEqual([]);
    expect(all.filter((p) => p.endsWith(".map"))).toEqual([]);
    for (const sh of ["bin/sh", "usr/bin/sh", "bin/bash", "bin/dash", "bin/busybox", "usr/bin/env"]) {
      expect(existsSync(join(rootfs, sh)), sh).toBe(false);
    }
    expect(all.filter((p) => /(^|\/)(npm|npx|npm-cli\.js)$/.test(p))).toEqual([]);
    // The build's CA bind mount and the build stage's tree stay out of every layer.
    expect(layerEntries.filter((e) => /ghat-build-ca|^\.?\/?src\//.test(e))).toEqual([]);
  });

  it("runs: `ghat --version` from the image's filesystem, as its user, with its environment", async () => {
    const env = Object.fromEntries((config.config.Env ?? []).map((e) => e.split(/=(.*)/s, 2)));
    const expected = `ghat ${pkg.version} (${revision})\n`;
    // As the image's user (chroot --userspec); chroot starts in /, so the bundle's path is absolute.
    const asUser = await run(
      "chroot",
      ["--userspec=65532:65532", rootfs, "/nodejs/bin/node", "/app/dist/ghat.mjs", "--version"],
      { env, timeout: 30_000 },
    );
    expect(asUser.stdout).toBe(expected);
    expect(asUser.stderr).toBe("");
    // The entry point exactly as configured: relative to the working directory.
    const entry = config.config.Entrypoint ?? [];
    const asEntrypoint = await run(
      "unshare",
      [`--root=${rootfs}`, `--wd=${config.config.WorkingDir ?? "/"}`, ...entry, "--version"],
      { env, timeout: 30_000 },
    );
    expect(asEntrypoint.stdout).toBe(expected);
  });

  it("runs `ghat --help` and loads its static chunks from /app/dist/chunks as the non-root user", async () => {
    const env = Object.fromEntries((config.config.Env ?? []).map((e) => e.split(/=(.*)/s, 2)));
    const { stdout } = await run(
      "chroot",
      ["--userspec=65532:65532", rootfs, "/nodejs/bin/node", "/app/dist/ghat.mjs", "--help"],
      { env, timeout: 30_000 },
    );
    expect(stdout).toMatch(/^Usage: ghat run \[flags\]/);
  });
});

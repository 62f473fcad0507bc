import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { cacheDir, dockerArchive, importImage } from "../../src/devcluster/node.ts";

const run = promisify(execFile);

export const gitImage = "ghat.local/git:test";

/** What goes into the image from the host (Debian 12's git and busybox-static). */
const git = "/usr/bin/git";
const remoteHttps = "/usr/lib/git-core/git-remote-https";
const busybox = "/bin/busybox";
const mozillaCas = "/usr/share/ca-certificates/mozilla";

/**
 * A small image for git consumers on the local node: Debian's /usr/bin/git and
 * /usr/lib/git-core/git-remote-http(s) with the shared libraries ldd names for them (libcurl
 * with GnuTLS and the rest), busybox-static as /bin/sh with a link per applet (cat, sleep,
 * date, …), Mozilla's CA bundle at /etc/ssl/certs/ca-certificates.crt (libcurl-gnutls's
 * default), /etc/passwd and /etc/group with root and nonroot (65532), HOME=/tmp.
 *
 * CAs: public ones are in the bundle; a private CA (the simulator's) is mounted into the Pod
 * and named by GIT_SSL_CAINFO, as a user would for a self-hosted git server.
 *
 * Written as a docker-save tarball (cached under ~/.cache/ghat/node, keyed by the inputs'
 * bytes) and imported into the node's containerd. Pods use `imagePullPolicy: Never`.
 */
export async function loadGitImage(containerdAddress: string): Promise<string> {
  for (const f of [git, remoteHttps, busybox])
    if (!existsSync(f)) throw new Error(`no ${f}: apt-get install git busybox-static`);
  const digest = createHash("sha256");
  for (const f of [git, remoteHttps, busybox]) digest.update(readFileSync(f));
  digest.update(gitImage).update("rev1");
  const tarball = join(cacheDir(), `git-${digest.digest("hex").slice(0, 12)}.tar`);
  if (!existsSync(tarball)) await buildGitImage(tarball);
  await importImage(containerdAddress, tarball);
  return gitImage;
}

/** Size of the image's tarball (bytes), for reports. */
export function gitImageTarball(): string | undefined {
  const dir = cacheDir();
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.startsWith("git-") && f.endsWith(".tar"))
        .map((f) => join(dir, f))[0]
    : undefined;
}

async function buildGitImage(out: string): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), "ghat-gitimage-"));
  try {
    const r = join(tmp, "rootfs");
    for (const d of [
      "bin",
      "etc/ssl/certs",
      "tmp",
      "proc",
      "sys",
      "dev",
      "var",
      "root",
      "usr/bin",
      "usr/lib/git-core",
    ])
      await mkdir(join(r, d), { recursive: true });
    await chmod(join(r, "tmp"), 0o1777);
    await cp(busybox, join(r, "bin/busybox"));
    const { stdout: applets } = await run(busybox, ["--list"]);
    for (const a of applets.split("\n").filter((x) => x && x !== "busybox"))
      await symlink("busybox", join(r, "bin", a));
    await cp(git, join(r, "usr/bin/git"));
    // git-remote-https is a link to git-remote-http in Debian: both, by their real file.
    await cp(remoteHttps, join(r, "usr/lib/git-core/git-remote-http"), { dereference: true });
    await symlink("git-remote-http", join(r, "usr/lib/git-core/git-remote-https"));
    // The shared libraries, copied by their real file to the path ldd names (/lib/..., /lib64/...).
    const { stdout: ldd } = await run("ldd", [git, remoteHttps]);
    const libs = new Set<string>();
    for (const line of ldd.split("\n")) {
      const m = line.match(/=> (\/\S+)/) ?? line.match(/^\s+(\/\S+)/);
      if (m?.[1]) libs.add(m[1]);
    }
    for (const lib of libs) {
      await mkdir(join(r, dirname(lib)), { recursive: true });
      await cp(lib, join(r, lib), { dereference: true });
    }
    const bundle = existsSync(mozillaCas)
      ? readdirSync(mozillaCas)
          .filter((f) => f.endsWith(".crt"))
          .sort()
          .map((f) => readFileSync(join(mozillaCas, f), "utf8"))
          .join("")
      : "";
    await writeFile(join(r, "etc/ssl/certs/ca-certificates.crt"), bundle);
    await writeFile(
      join(r, "etc/passwd"),
      "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/tmp:/bin/sh\n",
    );
    await writeFile(join(r, "etc/group"), "root:x:0:\nnonroot:x:65532:\n");
    await dockerArchive(
      r,
      gitImage,
      {
        Cmd: ["/bin/sh"],
        Env: [
          "PATH=/bin:/usr/bin",
          "HOME=/tmp",
          "GIT_TERMINAL_PROMPT=0",
          "GIT_CONFIG_NOSYSTEM=1",
          "GIT_SSL_CAINFO=/etc/ssl/certs/ca-certificates.crt",
        ],
      },
      out,
    );
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

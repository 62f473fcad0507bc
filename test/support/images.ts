import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { cacheDir, dockerArchive, importImage } from "../../src/devcluster/node.ts";

const run = promisify(execFile);

export const busyboxImage = "ghat.local/busybox:test";

/**
 * A minimal image for Pods on the local node: Debian's busybox-static as /bin/busybox with a
 * link per applet (/bin/sh, cat, sleep, …), written as a docker-save tarball (cached under
 * ~/.cache/ghat/node) and imported into the node's containerd. Nothing is pulled: Pods must use
 * `imagePullPolicy: Never` (or IfNotPresent). Returns the image name.
 */
export async function loadBusyboxImage(containerdAddress: string): Promise<string> {
  const busybox = "/bin/busybox";
  if (!existsSync(busybox)) throw new Error("no /bin/busybox: run hack/node/install.sh (busybox-static)");
  const digest = createHash("sha256")
    .update(await readFile(busybox))
    .update(busyboxImage)
    .digest("hex")
    .slice(0, 12);
  const tarball = join(cacheDir(), `busybox-${digest}.tar`);
  if (!existsSync(tarball)) {
    const tmp = await mkdtemp(join(tmpdir(), "ghat-busybox-"));
    try {
      const rootfs = join(tmp, "rootfs");
      for (const d of ["bin", "etc", "tmp", "proc", "sys", "dev", "var", "root"])
        await mkdir(join(rootfs, d), { recursive: true });
      await run("cp", [busybox, join(rootfs, "bin", "busybox")]);
      const { stdout } = await run(busybox, ["--list"]);
      for (const applet of stdout.split("\n").filter((a) => a && a !== "busybox"))
        await symlink("busybox", join(rootfs, "bin", applet));
      await dockerArchive(rootfs, busyboxImage, { Cmd: ["/bin/sh"] }, tarball);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  await importImage(containerdAddress, tarball);
  return busyboxImage;
}

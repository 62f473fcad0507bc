import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const cli = new URL("../../src/cli.ts", import.meta.url).pathname;

describe("make run without a kube context (the sandbox)", () => {
  const dir = mkdtempSync(join(tmpdir(), "ghat-sandbox-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("starts a control plane, the simulator and the operator, waits for Ready with progress, and prints the Secret", async () => {
    // --local: whatever kube context this machine has, the sandbox path is what a new user
    // without one gets. Its own control plane, in its own directory.
    const child = spawn(process.execPath, [cli, "sandbox", "--local", "--exit-when-ready"], {
      cwd: dir,
      env: { ...process.env, KUBECONFIG: join(dir, "none") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      out += c.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code, out.slice(-4000)).toBe(0);
    expect(out).toContain("ghat sandbox is running");
    expect(out).toMatch(/demo\s+True\s+Issued/);
    expect(out).toContain("demo-github-token");
    expect(out).toContain("ghat.dev/expires-at");
    // The token itself is never printed, only the command that shows its first characters.
    expect(out).not.toMatch(/ghs_[A-Za-z0-9._-]{20,}/);
  }, 300_000);
});

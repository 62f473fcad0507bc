import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { simCommand } from "../../src/sim/command.ts";
import { call, keys } from "./helpers.ts";

function capture() {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (c: Buffer) => {
    text += c.toString();
  });
  return { stream, text: () => text };
}

describe("ghat sim", () => {
  it.each([
    [["--port", "http"], "--port must be a number"],
    [["--port", "70000"], "--port must be a number"],
    [["--token-lifetime", "0"], "--token-lifetime must be a whole number"],
    [["--token-format", "jwt"], "--token-format must be classic or stateless"],
    [["--colour"], "Unknown option '--colour'"],
    [["extra"], "Unexpected argument 'extra'"],
    [["--seed", "/nonexistent/seed.yaml"], "seed file /nonexistent/seed.yaml cannot be read"],
  ])("refuses %j with a readable message and exit code 2", async (argv, message) => {
    const stderr = capture();
    const stdout = capture();
    expect(await simCommand(argv, { stdout: stdout.stream, stderr: stderr.stream })).toBe(2);
    expect(stderr.text()).toContain(message);
    expect(stderr.text()).toContain("Usage: ghat sim");
    expect(stdout.text()).toBe("");
  });

  it("prints its URL as one JSON line once listening, serves the seed, and stops cleanly", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ghat-sim-cmd-"));
    const seed = join(dir, "seed.json");
    writeFileSync(
      seed,
      JSON.stringify({ apps: [{ id: 7, clientId: "Iv7", slug: "seven", publicKeys: [keys.publicKeyPem] }] }),
    );
    const stdout = capture();
    const stderr = capture();
    let stop = () => {};
    const stopped = new Promise<void>((resolve) => {
      stop = resolve;
    });
    const exit = simCommand(["--seed", seed, "--enterprise", "--token-lifetime", "60"], {
      stdout: stdout.stream,
      stderr: stderr.stream,
      stop: stopped,
    });
    await expect.poll(() => stdout.text()).toMatch(/\n$/);
    const line = JSON.parse(stdout.text()) as { url: string; apiUrl: string };
    expect(line.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(line.apiUrl).toBe(`${line.url}/api/v3`);
    const state = await call(line.url, "GET", "/_sim/state");
    expect(state.body).toMatchObject({ apps: [{ id: 7 }] });
    stop();
    expect(await exit).toBe(0);
    expect(stderr.text()).toContain("Started GitHub simulator");
    await expect(fetch(line.url)).rejects.toThrow();
  });

  it("runs until SIGTERM as a process, then exits 0", async () => {
    const child = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { simCommand } from ${JSON.stringify(new URL("../../src/sim/command.ts", import.meta.url).href)}; process.exitCode = await simCommand(["--token-format", "stateless"]);`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    await expect.poll(() => out, { timeout: 15_000 }).toMatch(/"url":"http:\/\/127\.0\.0\.1:\d+"/);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });
});

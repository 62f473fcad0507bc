import { type ChildProcess, spawn } from "node:child_process";
import { expect } from "vitest";

const mainTs = new URL("../../src/main.ts", import.meta.url).pathname;

/** Flags every test operator needs: its kubeconfig, and health and metrics on free loopback ports. */
export function localFlags(kubeconfig: string): string[] {
  return [
    "--kubeconfig",
    kubeconfig,
    "--health-port",
    "0",
    "--metrics-port",
    "0",
    "--bind-address",
    "127.0.0.1",
    // The simulator's tokens in tests live seconds, not an hour: accept them, and let them
    // rotate faster than the production mint floor (tests of the bounds set their own).
    "--min-token-lifetime",
    "5s",
    "--min-mint-interval",
    "1s",
    "--app-mint-rate",
    "6000",
    "--app-mint-burst",
    "6000",
    "--installation-mint-rate",
    "6000",
    "--installation-mint-burst",
    "6000",
  ];
}

/** SIGKILLs every process and waits for them to exit. */
export async function killAll(procs: OperatorProcess[]): Promise<void> {
  for (const p of procs) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.exited));
}

/** An operator in its own process, as it runs in a pod: `node src/main.ts [flags]`. */
export class OperatorProcess {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;

  constructor(flags: string[], entry = mainTs, cwd?: string) {
    this.proc = spawn(process.execPath, [entry, ...flags], {
      stdio: ["ignore", "pipe", "pipe"],
      ...(cwd ? { cwd } : {}),
    });
    let buffer = "";
    const collect = (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split("\n");
      buffer = parts.pop() ?? "";
      this.lines.push(...parts);
    };
    this.proc.stdout?.on("data", collect);
    this.proc.stderr?.on("data", collect);
    this.exited = new Promise((resolve) => this.proc.once("exit", (code) => resolve(code)));
  }

  logs(msg: string): Record<string, unknown>[] {
    return this.lines
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      })
      .filter((l) => l.msg === msg);
  }

  async waitFor(msg: string, timeout = 30_000): Promise<Record<string, unknown>> {
    await expect.poll(() => this.logs(msg).length, { timeout, interval: 100 }).toBeGreaterThan(0);
    return this.logs(msg)[0] ?? {};
  }

  async metrics(): Promise<string> {
    const started = await this.waitFor("Started ghat");
    const res = await fetch(`http://127.0.0.1:${String(started.metricsPort)}/metrics`);
    return res.text();
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.proc.exitCode === null) this.proc.kill(signal);
  }
}

/** The value of one Prometheus sample, by name and label subset. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { createServer } from "node:net";

/**
 * Runs a command under a watchdog shell that kills it when this Node process dies (even by
 * SIGKILL) or when the watchdog is told to stop, so no etcd or kube-apiserver outlives a test run.
 */
const watchdog = `
parent=$1; shift
"$@" &
child=$!
echo "$child" > "$PIDFILE"
stop() { kill -TERM "$child" 2>/dev/null; for _ in $(seq 1 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done; kill -KILL "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0; }
trap stop TERM INT HUP
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1 & wait $!; done
stop
`;

export interface Supervised {
  name: string;
  child: ChildProcess;
  /** Resolves when the watchdog (and so the process) has exited. */
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export function supervise(
  name: string,
  command: string,
  args: string[],
  logFile: string,
  pidFile: string,
): Supervised {
  const out = openSync(logFile, "a");
  const child = spawn("bash", ["-c", watchdog, "watchdog", String(process.pid), command, ...args], {
    stdio: ["ignore", out, out],
    env: { ...process.env, PIDFILE: pidFile },
    detached: false,
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    name,
    child,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** A free TCP port on 127.0.0.1 (asked of the kernel, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      const port = typeof address === "object" && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Polls `check` every `intervalMs` until it answers true; fails at once when `proc` has exited
 * and after `timeoutMs` with the last error `check` threw. Polls a process the harness started
 * (etcd, the API server, containerd, the Node): not a test, so no expect.poll.
 */
export async function waitFor(
  what: string,
  timeoutMs: number,
  proc: Supervised | undefined,
  check: () => Promise<boolean>,
  intervalMs = 250,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    if (proc && proc.child.exitCode !== null)
      throw new Error(`${proc.name} exited while waiting for ${what}; see its log`);
    try {
      if (await check()) return;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${last})` : ""}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

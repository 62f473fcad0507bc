import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { startControlPlane } from "./controlplane.ts";

const localDir = resolve(process.cwd(), ".local");
const stateDir = join(localDir, "cluster");
const stateFile = join(stateDir, "state.json");
const kubeconfig = join(localDir, "kubeconfig");

interface State {
  pid: number;
  server: string;
}

const usage = `Usage: ghat cluster up|down|status

A local control plane (kube-apiserver, etcd, kube-controller-manager) that keeps running in the
background; its state lives in .local/cluster and its kubeconfig in .local/kubeconfig.

Commands:
  up       start it (the binaries are built once from the Go module proxy) and print the kubeconfig
  down     stop it
  status   say whether it runs (exit code 0) or not (3); the default

Flags:
  -h, --help   show this help
`;

/** `ghat cluster up|down|status`: a local control plane that keeps running in the background. */
export async function clusterCommand(argv: string[]): Promise<number> {
  if (argv.some((a) => a === "--help" || a === "-h" || a === "help")) {
    process.stdout.write(usage);
    return 0;
  }
  const [sub = "status"] = argv;
  switch (sub) {
    case "up":
      return up();
    case "down":
      return down();
    case "status":
      return status();
    case "serve":
      return serve();
    default:
      process.stderr.write(`ghat cluster: unknown subcommand "${sub}" (up, down, status)\n`);
      return 2;
  }
}

function readState(): State | undefined {
  try {
    const s = JSON.parse(readFileSync(stateFile, "utf8")) as State;
    process.kill(s.pid, 0);
    return s;
  } catch {
    return undefined;
  }
}

async function up(): Promise<number> {
  const running = readState();
  if (running) {
    process.stdout.write(
      `Control plane already running at ${running.server}\n  export KUBECONFIG=${kubeconfig}\n`,
    );
    return 0;
  }
  mkdirSync(stateDir, { recursive: true });
  rmSync(stateFile, { force: true });
  const out = openSync(join(stateDir, "daemon.log"), "a");
  const child = spawn(
    process.execPath,
    [...process.execArgv, process.argv[1] ?? "src/cli.ts", "cluster", "serve"],
    {
      detached: true,
      stdio: ["ignore", out, out],
    },
  );
  child.unref();
  const deadline = Date.now() + 240_000;
  while (Date.now() < deadline) {
    const s = readState();
    if (s) {
      process.stdout.write(
        `Control plane running at ${s.server}\n  kubectl --kubeconfig ${kubeconfig} get ns\n  export KUBECONFIG=${kubeconfig}\nStop it with: make cluster-down\n`,
      );
      return 0;
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 300));
  }
  process.stderr.write(`The control plane did not start; see ${join(stateDir, "daemon.log")}\n`);
  return 1;
}

async function serve(): Promise<number> {
  const cp = await startControlPlane({ workDir: join(stateDir, "work") });
  copyFileSync(cp.kubeconfigPath, kubeconfig);
  writeFileSync(stateFile, JSON.stringify({ pid: process.pid, server: cp.server }));
  await new Promise<void>((r) => {
    process.once("SIGTERM", r);
    process.once("SIGINT", r);
  });
  await cp.stop();
  rmSync(join(stateDir, "work"), { recursive: true, force: true });
  rmSync(stateFile, { force: true });
  return 0;
}

async function down(): Promise<number> {
  const s = readState();
  if (!s) {
    process.stdout.write("No control plane is running\n");
    return 0;
  }
  process.kill(s.pid, "SIGTERM");
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && existsSync(stateFile)) await new Promise((r) => setTimeout(r, 200));
  try {
    process.kill(s.pid, 0);
    process.kill(s.pid, "SIGKILL");
  } catch {
    // exited
  }
  process.stdout.write("Control plane stopped\n");
  return 0;
}

function status(): number {
  const s = readState();
  process.stdout.write(s ? `running at ${s.server} (kubeconfig ${kubeconfig})\n` : "not running\n");
  return s ? 0 : 3;
}

import { spawn } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { startControlPlane } from "./controlplane.ts";
import { stopNode } from "./node.ts";

const localDir = resolve(process.cwd(), ".local");
const stateDir = join(localDir, "cluster");
const stateFile = join(stateDir, "state.json");
const kubeconfig = join(localDir, "kubeconfig");

interface State {
  pid: number;
  server: string;
  /** Name of the node, when started with --node. */
  node?: string;
}

const usage = `Usage: ghat cluster up [--node]|down|status

A local control plane (kube-apiserver, etcd, kube-controller-manager) that keeps running in the
background; its state lives in .local/cluster and its kubeconfig in .local/kubeconfig. With
--node, also a real node that runs Pods: containerd, kubelet and kube-scheduler (Linux, root;
hack/node/install.sh installs containerd, runc and the CNI plugins from Debian).

Commands:
  up       start it (the binaries are built once from the Go module proxy) and print the kubeconfig
  down     stop it
  status   say whether it runs (exit code 0) or not (3); the default

Flags:
  --node       (up) also start a node (make cluster NODE=1)
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
      return up(argv.includes("--node"));
    case "down":
      return down();
    case "status":
      return status();
    case "serve":
      return serve(argv.includes("--node"));
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

const progressPrefix = "progress: ";

async function up(node: boolean): Promise<number> {
  const running = readState();
  if (running) {
    if (node && !running.node)
      process.stderr.write(
        "It runs without a node: stop it (make cluster-down) and start it again with --node\n",
      );
    process.stdout.write(
      `Control plane already running at ${running.server}\n  export KUBECONFIG=${kubeconfig}\n`,
    );
    return 0;
  }
  mkdirSync(stateDir, { recursive: true });
  rmSync(stateFile, { force: true });
  const logFile = join(stateDir, "daemon.log");
  const out = openSync(logFile, "a");
  let logOffset = statSync(logFile).size;
  const child = spawn(
    process.execPath,
    [...process.execArgv, process.argv[1] ?? "src/cli.ts", "cluster", "serve", ...(node ? ["--node"] : [])],
    {
      detached: true,
      stdio: ["ignore", out, out],
    },
  );
  child.unref();
  // A node may first build kubelet (minutes, once) and install packages.
  const deadline = Date.now() + (node ? 1_800_000 : 240_000);
  while (Date.now() < deadline) {
    // Echo the daemon's progress lines (building, starting containerd, waiting for Node Ready).
    const size = statSync(logFile).size;
    if (size > logOffset) {
      const fd = openSync(logFile, "r");
      const buf = Buffer.alloc(size - logOffset);
      readSync(fd, buf, 0, buf.length, logOffset);
      closeSync(fd);
      const text = buf.toString("utf8");
      const complete = text.lastIndexOf("\n") + 1;
      logOffset += Buffer.byteLength(text.slice(0, complete));
      for (const line of text.slice(0, complete).split("\n"))
        if (line.startsWith(progressPrefix)) process.stdout.write(`${line.slice(progressPrefix.length)}\n`);
    }
    const s = readState();
    if (s) {
      if (s.node) process.stdout.write(`Node ${s.node} Ready\n`);
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

async function serve(node: boolean): Promise<number> {
  const progress = (line: string) => process.stdout.write(`${progressPrefix}${line}\n`);
  const cp = await startControlPlane({
    workDir: join(stateDir, "work"),
    ...(node ? { node: { progress } } : {}),
  });
  copyFileSync(cp.kubeconfigPath, kubeconfig);
  const state: State = { pid: process.pid, server: cp.server, ...(cp.node ? { node: cp.node.name } : {}) };
  writeFileSync(stateFile, JSON.stringify(state));
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
    // A daemon that died without stopping its node left it behind: undo it from its work dir.
    await stopNode(join(stateDir, "work", "node"));
    process.stdout.write("No control plane is running\n");
    return 0;
  }
  process.kill(s.pid, "SIGTERM");
  // Stopping a node (containers, mounts, iptables) takes longer than the control plane alone.
  const deadline = Date.now() + (s.node ? 120_000 : 30_000);
  while (Date.now() < deadline && existsSync(stateFile)) await new Promise((r) => setTimeout(r, 200));
  try {
    process.kill(s.pid, 0);
    process.kill(s.pid, "SIGKILL");
  } catch {
    // exited
  }
  await stopNode(join(stateDir, "work", "node"));
  process.stdout.write(s.node ? "Control plane and node stopped\n" : "Control plane stopped\n");
  return 0;
}

function status(): number {
  const s = readState();
  process.stdout.write(s ? `running at ${s.server} (kubeconfig ${kubeconfig})\n` : "not running\n");
  return s ? 0 : 3;
}

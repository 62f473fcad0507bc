#!/usr/bin/env node
/**
 * The `ghat` command. Subcommands:
 *   run                      the operator (default)
 *   sim [--port N] [--seed FILE]   the GitHub API simulator, for sandboxes
 *   cluster up [--node]|down|status   a local control plane (kube-apiserver, etcd, kube-controller-manager; --node adds a node)
 *   sandbox                  control plane + simulator + operator + examples, for a first look
 *   version                  print the version
 */
const args = process.argv.slice(2);
// Flags without a subcommand are the operator's: `ghat --leader-elect` is `ghat run --leader-elect`.
const [first = "run", ...more] = args[0]?.startsWith("-") && !topLevel(args[0]) ? ["run", ...args] : args;
// `ghat help cluster up` is `ghat cluster up --help`.
const [sub, ...rest] = first === "help" && more.length > 0 ? [...more, "--help"] : [first, ...more];

function topLevel(arg: string): boolean {
  return ["--help", "-h", "--version", "-v"].includes(arg);
}

const usage = `Usage: ghat [command] [flags]

Commands:
  run                       the operator (default); "ghat run --help" lists its flags
  sim                       the GitHub API simulator, for sandboxes
  cluster up|down|status    a local control plane (kube-apiserver, etcd, kube-controller-manager);
                            "cluster up --node" adds a node that runs Pods
  sandbox                   control plane, simulator, operator and an example, for a first look
  version                   print the version

Every command takes --help.
`;

async function main(): Promise<number> {
  switch (sub) {
    case "run":
      return (await import("./main.ts")).runCommand(rest);
    case "sim":
      return (await import("./sim/command.ts")).simCommand(rest);
    case "cluster":
      return (await import("./devcluster/command.ts")).clusterCommand(rest);
    case "sandbox":
      return (await import("./sandbox.ts")).sandboxCommand(rest);
    case "version":
    case "--version":
    case "-v":
      process.stdout.write(`${(await import("./version.ts")).versionLine()}\n`);
      return 0;
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(usage);
      return 0;
    default:
      process.stderr.write(`ghat: unknown command "${sub}" (try "ghat help")\n`);
      return 2;
  }
}

main().then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ghat: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);

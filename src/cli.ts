#!/usr/bin/env node
/**
 * The `ghat` command. Subcommands:
 *   run                      the operator (default)
 *   sim [--port N] [--seed FILE]   the GitHub API simulator, for sandboxes
 *   cluster up|down|status   a local control plane (kube-apiserver, etcd, kube-controller-manager)
 *   sandbox                  control plane + simulator + operator + examples, for a first look
 */
const [sub = "run", ...rest] = process.argv.slice(2);

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
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(
        "Usage: ghat [run|sim|cluster up|cluster down|sandbox] [flags]\n  ghat run --help   operator flags\n",
      );
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

import { parseArgs } from "node:util";
import { createLogger, type Logger } from "../log.ts";
import { loadSeedFile, type ParsedSeed } from "./seed.ts";
import { startSimulator } from "./simulator.ts";

export interface SimCommandIo {
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  log?: Logger;
  /** Resolves when the simulator should stop; default: SIGTERM or SIGINT. */
  stop?: Promise<unknown>;
}

const usage = `Usage: ghat sim [--port N] [--host ADDR] [--seed FILE] [--token-lifetime SECONDS]
                [--token-format classic|stateless] [--enterprise]`;

const help = `${usage}

Runs the GitHub API simulator until SIGTERM or SIGINT; prints {"url", "apiUrl"} once listening.

Flags:
  --port N                          port to listen on; 0 picks a free one (default 0)
  --host ADDR                       address to listen on (default 127.0.0.1)
  --seed FILE                       Apps, installations and repositories to start with (YAML or JSON)
  --token-lifetime SECONDS          lifetime of minted installation tokens (default 3600)
  --token-format classic|stateless  shape of minted tokens (default classic)
  --enterprise                      act as GitHub Enterprise Server (API under /api/v3, no rate limits)
  -h, --help                        show this help
`;

/**
 * `ghat sim`: the GitHub API simulator as a process, for sandboxes. Prints `{"url", "apiUrl"}`
 * as one JSON line once listening, runs until SIGTERM/SIGINT, closes cleanly and returns 0.
 * Bad flags or a bad seed file: a readable message on stderr and 2.
 */
export async function simCommand(argv: string[], io: SimCommandIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const fail = (message: string) => {
    stderr.write(`ghat sim: ${message}\n${usage}\n`);
    return 2;
  };
  let values: {
    port: string;
    host: string;
    seed?: string | undefined;
    "token-lifetime": string;
    "token-format": string;
    enterprise: boolean;
    help?: boolean | undefined;
  };
  try {
    values = parseArgs({
      args: argv,
      options: {
        port: { type: "string", default: "0" },
        host: { type: "string", default: "127.0.0.1" },
        seed: { type: "string" },
        "token-lifetime": { type: "string", default: "3600" },
        "token-format": { type: "string", default: "classic" },
        enterprise: { type: "boolean", default: false },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
      strict: true,
    }).values;
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
  if (values.help) {
    stdout.write(help);
    return 0;
  }
  const port = Number(values.port);
  const lifetime = Number(values["token-lifetime"]);
  const format = values["token-format"];
  if (!/^\d+$/.test(values.port) || port > 65535) return fail("--port must be a number from 0 to 65535");
  if (!/^\d+$/.test(values["token-lifetime"]) || lifetime < 1)
    return fail("--token-lifetime must be a whole number of seconds, at least 1");
  if (format !== "classic" && format !== "stateless")
    return fail("--token-format must be classic or stateless");

  let seed: ParsedSeed | undefined;
  try {
    seed = values.seed === undefined ? undefined : loadSeedFile(values.seed);
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }

  const log = io.log ?? createLogger({ level: "info", destination: stderr });
  let sim: Awaited<ReturnType<typeof startSimulator>>;
  try {
    sim = await startSimulator({
      port,
      host: values.host,
      tokenLifetimeSeconds: lifetime,
      tokenFormat: format,
      enterprise: values.enterprise,
      log,
      ...(seed ? { seed } : {}),
    });
  } catch (err) {
    return fail(
      `cannot listen on ${values.host}:${port}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  stdout.write(`${JSON.stringify({ url: sim.url, apiUrl: sim.apiUrl })}\n`);

  await (io.stop ?? signalled());
  await sim.close();
  log.info("Stopped GitHub simulator");
  return 0;
}

function signalled(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off("SIGTERM", done);
      process.off("SIGINT", done);
      resolve();
    };
    process.on("SIGTERM", done);
    process.on("SIGINT", done);
  });
}

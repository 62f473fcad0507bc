import { parseArgs } from "node:util";
import { createLogger } from "../log.ts";
import { loadSeedFile } from "./seed.ts";
import { startSimulator } from "./simulator.ts";

/** `ghat sim`: the GitHub API simulator as a process, for sandboxes. */
export async function simCommand(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
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
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`ghat sim: ${(err as Error).message}\n`);
    return 2;
  }
  const port = Number(values.port);
  const lifetime = Number(values["token-lifetime"]);
  const format = values["token-format"];
  if (!Number.isInteger(port) || port < 0 || port > 65535) return usage("--port must be 0..65535");
  if (!Number.isInteger(lifetime) || lifetime < 1)
    return usage("--token-lifetime must be a positive number of seconds");
  if (format !== "classic" && format !== "stateless")
    return usage("--token-format must be classic or stateless");
  const log = createLogger({ level: "info" });
  let seed: ReturnType<typeof loadSeedFile> | undefined;
  try {
    seed = typeof values.seed === "string" ? loadSeedFile(values.seed) : undefined;
  } catch (err) {
    process.stderr.write(`ghat sim: ${(err as Error).message}\n`);
    return 2;
  }
  const sim = await startSimulator({
    port,
    host: String(values.host),
    tokenLifetimeSeconds: lifetime,
    tokenFormat: format,
    enterprise: values.enterprise === true,
    ...(seed ? { seed } : {}),
  });
  process.stdout.write(`${JSON.stringify({ url: sim.url, apiUrl: sim.apiUrl })}\n`);
  log.info({ url: sim.apiUrl }, "Started GitHub simulator");
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
  await sim.close();
  return 0;
}

function usage(message: string): number {
  process.stderr.write(`ghat sim: ${message}\n`);
  return 2;
}

import { type Logger, type LoggerOptions, pino } from "pino";
import { redact } from "./core/errors.ts";

export type { Logger } from "pino";

/** Paths pino removes wherever they appear in a log object. */
export const redactPaths = [
  "token",
  "*.token",
  "privateKey",
  "*.privateKey",
  "key",
  "*.key",
  "jwt",
  "*.jwt",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "data",
  "*.data",
  "stringData",
  "*.stringData",
];

export interface LogOptions {
  level?: string;
  /** Human-readable output (for the sandbox); JSON otherwise. */
  pretty?: boolean;
  /** Where to write; defaults to stdout. Tests pass a stream they can scan. */
  destination?: NodeJS.WritableStream;
}

/** The root logger: JSON, with tokens, keys and Authorization headers redacted. */
export function createLogger(options: LogOptions = {}): Logger {
  const config: LoggerOptions = {
    level: options.level ?? "info",
    redact: { paths: redactPaths, censor: "[REDACTED]" },
    hooks: {
      // Free-text messages get the same scrubbing as status and events.
      logMethod(args, method) {
        const scrubbed = args.map((a) => (typeof a === "string" ? redact(a) : a)) as typeof args;
        method.apply(this, scrubbed);
      },
    },
    serializers: {
      err: (e: unknown) => {
        if (e instanceof Error) {
          return { type: e.name, message: redact(e.message), code: (e as { code?: unknown }).code };
        }
        return { message: redact(String(e)) };
      },
    },
  };
  if (options.pretty) {
    return pino(
      config,
      pino.transport({ target: "pino-pretty", options: { colorize: true, translateTime: "HH:MM:ss" } }),
    );
  }
  return options.destination ? pino(config, options.destination) : pino(config);
}

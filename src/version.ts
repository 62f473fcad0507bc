import { readFileSync } from "node:fs";

/**
 * What build this is: the version from package.json (read next to src/ or dist/, so it works
 * both from source and compiled) and the source revision the image was built from
 * (GHAT_REVISION, set at build time; "unknown" otherwise).
 */
function readVersion(): string {
  try {
    const pkg: unknown = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    const v = (pkg as { version?: unknown }).version;
    return typeof v === "string" && v !== "" ? v : "unknown";
  } catch {
    // A package without its package.json still runs; it just cannot say which version it is.
    return "unknown";
  }
}

export const version: string = readVersion();

export function revision(env: NodeJS.ProcessEnv = process.env): string {
  return env.GHAT_REVISION?.trim() || "unknown";
}

/** `ghat <version> (<revision>)`, what `ghat --version` prints. */
export function versionLine(env: NodeJS.ProcessEnv = process.env): string {
  return `ghat ${version} (${revision(env)})`;
}

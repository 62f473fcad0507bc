import { readFileSync } from "node:fs";

/**
 * `ghat/<version>` from package.json, which sits one directory above `src/` and `dist/`
 * alike; `ghat` when it cannot be read. Called once per client, never at import time.
 */
export function defaultUserAgent(): string {
  try {
    const pkg: unknown = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    const version = (pkg as { version?: unknown }).version;
    return typeof version === "string" ? `ghat/${version}` : "ghat";
  } catch {
    return "ghat";
  }
}

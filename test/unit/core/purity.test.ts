import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

// src/core decides; it does no I/O and reads no clock (docs/architecture.md invariant 4).
// This is the lint rule for it: any import of I/O, of the clients, or of the layers that do
// I/O fails here, naming the file and the import.
const core = new URL("../../../src/core/", import.meta.url).pathname;

const forbidden: [RegExp, string][] = [
  [/^node:(fs|fs\/promises|net|http|https|http2|tls|dns|dgram|child_process|worker_threads)$/, "I/O module"],
  [/^undici$/, "HTTP client"],
  [/^@kubernetes\/client-node$/, "Kubernetes client (type imports are fine)"],
  [/^\.\.\/(kube|github|controller|sim|devcluster)\//, "a layer that does I/O"],
  [/^\.\.\/(main|clock|sandbox|metrics|health|log)\.ts$/, "process wiring"],
];

/** Every `import … from "x"` that brings in values (not `import type`). */
function valueImports(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/^import\s+(type\s+)?[^;]*?from\s+["']([^"']+)["']/gms)) {
    if (!m[1]) out.push(m[2] ?? "");
  }
  for (const m of source.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) out.push(m[1] ?? "");
  return out;
}

describe("src/core is pure", () => {
  it("finds value imports and dynamic imports, and skips type-only imports", () => {
    const sample = [
      'import type { KubeConfig } from "@kubernetes/client-node";',
      'import { readFileSync } from "node:fs";',
      'const m = await import("undici");',
    ].join("\n");
    expect(valueImports(sample)).toEqual(["node:fs", "undici"]);
  });

  const files = readdirSync(core).filter((f) => f.endsWith(".ts"));
  it.each(files)("%s imports no I/O", (file) => {
    const source = readFileSync(join(core, file), "utf8");
    const bad = valueImports(source).flatMap((spec) =>
      forbidden.filter(([re]) => re.test(spec)).map(([, why]) => `${spec} (${why})`),
    );
    expect(bad, `src/core/${file}`).toEqual([]);
    expect(source, `src/core/${file} reads the clock`).not.toMatch(/\bDate\.now\(\)|new Date\(\)/);
  });
});

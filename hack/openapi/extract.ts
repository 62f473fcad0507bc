/**
 * Extracts the response schemas of the GitHub App routes ghat uses from GitHub's OpenAPI
 * description (@octokit/openapi, generated/api.github.com.json) into a small committed
 * fixture: the nine operations' responses by status, and only the components they reference
 * (transitively), so the file is self-contained. test/sim/openapi.test.ts validates every
 * simulator answer against it.
 *
 *   node hack/openapi/extract.ts [path/to/api.github.com.json]          write the fixture
 *   node hack/openapi/extract.ts --check [path/to/api.github.com.json]  exit 1 if it is stale
 *
 * Without a path, the pinned package is fetched once with `npm pack` (about 28 MB) into
 * the temp directory (ghat-octokit-openapi-23.0.2) and reused from there.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { operationIds } from "../../src/sim/routes.ts";

export const source = "@octokit/openapi@23.0.2";
/** The operations the simulator serves (src/sim/routes.ts). */
const wanted: ReadonlySet<string> = new Set(operationIds);
const fixture = new URL("../../test/fixtures/openapi/github-app-routes.json", import.meta.url);

type Json = { [key: string]: unknown };

export function extract(spec: Json): Json {
  const components = spec.components as { schemas: Json; responses: Json };
  const operations: Json = {};
  const needed = new Set<string>();
  const visit = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(visit);
    if (!node || typeof node !== "object") return node;
    const obj = node as Json;
    if (typeof obj.$ref === "string") {
      const ref = obj.$ref;
      if (ref.startsWith("#/components/responses/"))
        return visit(components.responses[ref.split("/").pop() ?? ""]);
      if (ref.startsWith("#/components/schemas/")) {
        const name = ref.split("/").pop() ?? "";
        if (!needed.has(name)) {
          needed.add(name);
          visit(components.schemas[name]);
        }
        return { $ref: ref };
      }
    }
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, visit(v)]));
  };
  for (const [path, item] of Object.entries(spec.paths as Json)) {
    for (const [method, op] of Object.entries(item as Json)) {
      const operation = op as { operationId?: string; responses?: Json };
      if (!operation.operationId || !wanted.has(operation.operationId)) continue;
      const responses: Json = {};
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        const r = visit(response) as { content?: { "application/json"?: { schema?: unknown } } };
        responses[status] = r.content?.["application/json"]?.schema ?? null;
      }
      operations[operation.operationId] = { method: method.toUpperCase(), path, responses };
    }
  }
  const missing = operationIds.filter((id) => !(id in operations));
  if (missing.length > 0) throw new Error(`the description has no operation ${missing.join(", ")}`);
  const schemas = Object.fromEntries(
    [...needed].sort().map((name) => [name, visit(components.schemas[name])]),
  );
  return { source, operations, components: { schemas } };
}

function load(path: string | undefined): Json {
  let file = path;
  if (!file) {
    const dir = join(tmpdir(), `ghat-${source.replace(/[@/]/g, "-").replace(/^-+/, "")}`);
    file = join(dir, "package/generated/api.github.com.json");
    if (!existsSync(file)) {
      mkdirSync(dir, { recursive: true });
      execFileSync("npm", ["pack", source, "--pack-destination", dir, "--silent"], {
        stdio: ["ignore", "ignore", "inherit"],
      });
      const tgz = join(dir, `octokit-openapi-${source.split("@").pop()}.tgz`);
      execFileSync("tar", ["-xzf", tgz, "-C", dir, "package/generated/api.github.com.json"]);
    }
  }
  return JSON.parse(readFileSync(file, "utf8")) as Json;
}

/** The fixture's text for a description: stable key order, two-space indent, final newline. */
export function render(spec: Json): string {
  return `${JSON.stringify(extract(spec), null, 2)}\n`;
}

function main(args: string[]): number {
  const check = args.includes("--check");
  const unknown = args.filter((a) => a.startsWith("-") && a !== "--check");
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown option ${unknown.join(" ")}\nusage: node hack/openapi/extract.ts [--check] [api.github.com.json]\n`,
    );
    return 2;
  }
  const rendered = render(load(args.find((a) => a !== "--check")));
  if (!check) {
    writeFileSync(fixture, rendered);
    return 0;
  }
  const committed = existsSync(fixture) ? readFileSync(fixture, "utf8") : "";
  if (committed !== rendered) {
    process.stderr.write(
      "test/fixtures/openapi/github-app-routes.json is stale: run `node hack/openapi/extract.ts`\n",
    );
    return 1;
  }
  process.stdout.write("OpenAPI fixture is current\n");
  return 0;
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2));

/**
 * Extracts the response schemas of the GitHub App routes ghat uses from GitHub's OpenAPI
 * description (@octokit/openapi, generated/api.github.com.json) into a small committed
 * fixture, keeping only the components they reference.
 *
 *   node hack/openapi/extract.ts [path/to/api.github.com.json]          write the fixture
 *   node hack/openapi/extract.ts --check [path/to/api.github.com.json]  exit 1 if it is stale
 *
 * Without a path, the package is fetched with `npm pack` (about 28 MB) into a temp dir.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const source = "@octokit/openapi@23.0.2";
export const operationIds = [
  "apps/get-authenticated",
  "apps/list-installations",
  "apps/get-installation",
  "apps/get-org-installation",
  "apps/get-user-installation",
  "apps/get-repo-installation",
  "apps/create-installation-access-token",
  "apps/revoke-installation-access-token",
  "apps/list-repos-accessible-to-installation",
];
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
      if (!operation.operationId || !operationIds.includes(operation.operationId)) continue;
      const responses: Json = {};
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        const r = visit(response) as { content?: { "application/json"?: { schema?: unknown } } };
        responses[status] = r.content?.["application/json"]?.schema ?? null;
      }
      operations[operation.operationId] = { method: method.toUpperCase(), path, responses };
    }
  }
  const schemas = Object.fromEntries(
    [...needed].sort().map((name) => [name, visit(components.schemas[name])]),
  );
  return { source, operations, components: { schemas } };
}

function load(path: string | undefined): Json {
  let file = path;
  if (!file) {
    const dir = mkdtempSync(join(tmpdir(), "openapi-"));
    execFileSync("npm", ["pack", source, "--pack-destination", dir, "--silent"], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    const tgz = join(dir, `octokit-openapi-${source.split("@").pop()}.tgz`);
    execFileSync("tar", ["-xzf", tgz, "-C", dir, "package/generated/api.github.com.json"]);
    file = join(dir, "package/generated/api.github.com.json");
  }
  return JSON.parse(readFileSync(file, "utf8")) as Json;
}

const args = process.argv.slice(2);
const check = args.includes("--check");
const rendered = `${JSON.stringify(extract(load(args.find((a) => a !== "--check"))), null, 2)}\n`;
if (check) {
  if (readFileSync(fixture, "utf8") !== rendered) {
    process.stderr.write(
      "test/fixtures/openapi/github-app-routes.json is stale: run `node hack/openapi/extract.ts`\n",
    );
    process.exit(1);
  }
  process.stdout.write("OpenAPI fixture is current\n");
} else {
  writeFileSync(fixture, rendered);
}

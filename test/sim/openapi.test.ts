import { readFileSync } from "node:fs";
import { createAppAuth } from "@octokit/auth-app";
import { request } from "@octokit/request";
import { Ajv } from "ajv";
import formats from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Simulator } from "../../src/sim/simulator.ts";
import { type Answer, appId, call, keys, mint, startSim, validJwt } from "./helpers.ts";

interface Fixture {
  source: string;
  operations: Record<string, { method: string; path: string; responses: Record<string, unknown> }>;
  components: { schemas: Record<string, unknown> };
}
const fixture = JSON.parse(
  readFileSync(new URL("../fixtures/openapi/github-app-routes.json", import.meta.url), "utf8"),
) as Fixture;
const ajv = new Ajv({ strict: false, allErrors: true });
formats.default(ajv);
ajv.addSchema({ $id: "github", components: openApiNullable(fixture.components) });

/** OpenAPI 3.0's `nullable: true` without a `type` (ajv needs one) becomes anyOf [schema, null]. */
function openApiNullable(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(openApiNullable);
  if (!node || typeof node !== "object") return node;
  const { nullable, ...rest } = node as Record<string, unknown>;
  const walked = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, openApiNullable(v)]));
  if (nullable !== true) return walked;
  if ("type" in walked) return { ...walked, nullable: true };
  return { anyOf: [walked, { type: "null" }] };
}

/** Validates a response against the schema GitHub's OpenAPI description gives for that status. */
function validate(op: string, r: Answer) {
  const operation = fixture.operations[op];
  expect(operation, op).toBeDefined();
  const schema = operation?.responses[String(r.status)];
  expect(schema, `${op} documents status ${r.status}`).toBeDefined();
  if (schema === null) return;
  const rewritten = openApiNullable(
    JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"github#/components/')),
  ) as object;
  const check = ajv.compile(rewritten);
  const ok = check(r.body);
  expect(ok, `${op} ${r.status}: ${ajv.errorsText(check.errors)}`).toBe(true);
}

let sim: Simulator;
beforeAll(async () => {
  sim = await startSim();
});
afterAll(() => sim.close());

describe("responses match GitHub's OpenAPI description", () => {
  const jwt = () => ({ auth: `Bearer ${validJwt()}` });

  it("covers the nine operations ghat uses", () => {
    expect(Object.keys(fixture.operations).sort()).toHaveLength(9);
  });

  it.each([
    ["apps/get-authenticated", "/app"],
    ["apps/list-installations", "/app/installations"],
    ["apps/get-installation", "/app/installations/1"],
    ["apps/get-installation", "/app/installations/999"],
    ["apps/get-org-installation", "/orgs/acme/installation"],
    ["apps/get-user-installation", "/users/octocat/installation"],
    ["apps/get-repo-installation", "/repos/acme/app/installation"],
    ["apps/get-repo-installation", "/repos/acme/none/installation"],
    ["apps/get-installation", "/api/v3/app/installations/4"],
  ])("%s (GET %s)", async (op, path) => {
    validate(op, await call(sim, "GET", path, jwt()));
  });

  it.each<[string, number, unknown]>([
    ["all permissions", 1, undefined],
    ["named repositories", 1, { repositories: ["app", "lib"], permissions: { contents: "read" } }],
    ["repository ids", 2, { repository_ids: [21] }],
    ["an unknown installation (404)", 99, undefined],
    ["a suspended installation (403)", 4, undefined],
    ["a permission not granted (422)", 1, { permissions: { administration: "write" } }],
  ])("apps/create-installation-access-token with %s", async (_case, id, body) => {
    validate("apps/create-installation-access-token", await mint(sim, id, body));
  });

  it("apps/list-repos-accessible-to-installation and apps/revoke-installation-access-token", async () => {
    const token = ((await mint(sim, 1, { repositories: ["app"] })).body as { token: string }).token;
    const list = await call(sim, "GET", "/installation/repositories", { auth: `token ${token}` });
    validate("apps/list-repos-accessible-to-installation", list);
    expect(list.body).toMatchObject({ total_count: 1, repository_selection: "selected" });
    expect(list.headers.get("x-ratelimit-remaining")).toMatch(/^\d+$/);
    validate(
      "apps/list-repos-accessible-to-installation",
      await call(sim, "GET", "/installation/repositories", { auth: "token nope" }),
    );
    const revoked = await call(sim, "DELETE", "/installation/token", { auth: `token ${token}` });
    expect(revoked.status).toBe(204);
    expect(revoked.body).toBeUndefined();
  });
});

describe("@octokit/auth-app, unchanged, against the simulator", () => {
  it("mints a live token", async () => {
    const auth = createAppAuth({
      appId,
      privateKey: keys.privateKeyPkcs1Pem,
      request: request.defaults({ baseUrl: sim.url }),
    });
    const result = await auth({
      type: "installation",
      installationId: 1,
      permissions: { contents: "read" },
      refresh: true,
    });
    expect(result.token).toMatch(/^ghs_/);
    expect(sim.checkToken(result.token, "acme/app").live).toBe(true);
    expect(sim.checkToken(result.token).scope?.permissions).toEqual({ contents: "read" });
  });
});
